using Microsoft.ML.TaskVectors.Images;
using Microsoft.ML.TaskVectors.TaskVectors;

namespace Microsoft.ML.TaskVectors.Data;

/// <summary>A colour with float channels in [0, 1].</summary>
internal readonly record struct Rgb(float R, float G, float B)
{
    /// <summary>ITU-R 601 luma, as the grey of <see cref="ColorOps"/>.</summary>
    public float Luma => ColorOps.Grey(R, G, B);

    public static Rgb FromHsv(float hue, float saturation, float value)
    {
        var (r, g, b) = ColorOps.FromHsv(hue - MathF.Floor(hue), saturation, value);
        return new Rgb(r, g, b);
    }

    public static Rgb Lerp(Rgb a, Rgb b, float t) => new(a.R + (b.R - a.R) * t, a.G + (b.G - a.G) * t, a.B + (b.B - a.B) * t);
}

/// <summary>
/// SplitMix64 from a key: output i is <see cref="StableHash.Mix"/>(key + i·γ). Only integer arithmetic, so a key gives
/// the same numbers on every machine (unlike HashCode, which is seeded per process).
/// </summary>
internal sealed class ProceduralRandom(ulong key)
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;
    private ulong _state = key;

    public ulong NextUInt64()
    {
        var value = StableHash.Mix(_state);
        _state += Gamma;
        return value;
    }

    /// <summary>Uniform in [0, 1) with 24 random bits: exact in float.</summary>
    public float NextFloat() => (NextUInt64() >> 40) * (1f / (1 << 24));

    public float Uniform(float low, float high) => low + (high - low) * NextFloat();

    /// <summary>Uniform in 0 … <paramref name="count"/> − 1 (multiply-shift, no modulo bias worth the name).</summary>
    public int Next(int count) => (int)(((NextUInt64() >> 32) * (ulong)count) >> 32);

    public bool NextBool() => (NextUInt64() >> 63) != 0;

    /// <summary>A random colour: any hue, saturation and value in the given ranges.</summary>
    public Rgb Colour(float minSaturation = 0f, float maxSaturation = 1f, float minValue = 0f, float maxValue = 1f) =>
        Rgb.FromHsv(NextFloat(), Uniform(minSaturation, maxSaturation), Uniform(minValue, maxValue));

    /// <summary>A random colour whose luma differs from <paramref name="other"/>'s by at least <paramref name="contrast"/>.</summary>
    public Rgb ContrastingColour(Rgb other, float contrast = 0.3f)
    {
        // Rejection keeps hues uniform; the fallback (rare) keeps the draw count bounded.
        for (int attempt = 0; attempt < 16; attempt++)
        {
            var colour = Colour();
            if (MathF.Abs(colour.Luma - other.Luma) >= contrast) return colour;
        }
        return other.Luma < 0.5f ? new Rgb(1f, 1f, 1f) : new Rgb(0f, 0f, 0f);
    }

    /// <summary>A random unit vector within about ±<paramref name="spread"/> radians of (<paramref name="x"/>, <paramref name="y"/>).</summary>
    /// <remarks>Built with a tangent offset and a square root rather than sin/cos, whose last bits differ between platforms.</remarks>
    public (float X, float Y) Direction(float x, float y, float spread)
    {
        var t = Uniform(-spread, spread);
        var dx = x - t * y;
        var dy = y + t * x;
        var length = MathF.Sqrt(dx * dx + dy * dy);
        return (dx / length, dy / length);
    }
}

/// <summary>
/// A square float RGB canvas for procedural images, in image units: (0, 0) is the top-left corner, (1, 1) the
/// bottom-right, pixel (x, y) is sampled at its centre. Shapes are signed distance functions in image units,
/// anti-aliased over one pixel, so a scene looks the same at any size. Only +, −, ×, ÷ and √ touch pixel values,
/// which IEEE 754 rounds the same everywhere: a key gives bit-identical images on every machine.
/// </summary>
internal sealed class ProceduralCanvas
{
    private readonly float[] _rgb;

    public ProceduralCanvas(int size, ulong key)
    {
        Size = size;
        _rgb = new float[checked(size * size * 3)];
        Random = new ProceduralRandom(key);
    }

    /// <summary>Width and height in pixels.</summary>
    public int Size { get; }

    /// <summary>The image's random stream; painters draw their parameters from it in a fixed order.</summary>
    public ProceduralRandom Random { get; }

    public void Fill(Rgb colour) => Blend((_, _) => 1f, colour);

    /// <summary>Paints <paramref name="colour"/> where <paramref name="distance"/> (signed, image units, negative inside) is below 0.</summary>
    public void Paint(Func<float, float, float> distance, Rgb colour)
    {
        float size = Size;
        Blend((x, y) => Math.Clamp(0.5f - distance(x, y) * size, 0f, 1f), colour);
    }

    /// <summary>Mixes <paramref name="colour"/> in with the weight <paramref name="alpha"/>(x, y) in [0, 1].</summary>
    public void Blend(Func<float, float, float> alpha, Rgb colour)
    {
        float step = 1f / Size;
        for (int py = 0, i = 0; py < Size; py++)
        {
            var y = (py + 0.5f) * step;
            for (int px = 0; px < Size; px++, i += 3)
            {
                var a = alpha((px + 0.5f) * step, y);
                if (a <= 0f) continue;
                _rgb[i] += (colour.R - _rgb[i]) * a;
                _rgb[i + 1] += (colour.G - _rgb[i + 1]) * a;
                _rgb[i + 2] += (colour.B - _rgb[i + 2]) * a;
            }
        }
    }

    /// <summary>Adds uniform noise in ±<paramref name="amplitude"/> to every channel of every pixel.</summary>
    public void AddNoise(float amplitude)
    {
        for (int i = 0; i < _rgb.Length; i++) _rgb[i] += (2f * Random.NextFloat() - 1f) * amplitude;
    }

    /// <summary>The canvas as 8-bit RGB, rounded and clamped.</summary>
    public RgbImage ToImage()
    {
        var pixels = new byte[_rgb.Length];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)Math.Clamp(MathF.Round(_rgb[i] * 255f), 0f, 255f);
        return new RgbImage(Size, Size, pixels);
    }
}
