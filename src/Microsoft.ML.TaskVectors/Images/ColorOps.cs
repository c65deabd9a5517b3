namespace Microsoft.ML.TaskVectors.Images;

/// <summary>
/// Colour adjustments on planar float RGB in [0, 1], with torchvision's tensor definitions: each
/// blends the image with a reference (black, the mean grey, the pixel's grey) and clamps to [0, 1];
/// hue rotates in HSV space.
/// </summary>
internal static class ColorOps
{
    // ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
    private const float LumaR = 0.2989f, LumaG = 0.587f, LumaB = 0.114f;

    public static float Grey(float r, float g, float b) => LumaR * r + LumaG * g + LumaB * b;

    public static void Brightness(Span<float> r, Span<float> g, Span<float> b, float factor)
    {
        for (var i = 0; i < r.Length; i++)
        {
            r[i] = Blend(r[i], 0f, factor);
            g[i] = Blend(g[i], 0f, factor);
            b[i] = Blend(b[i], 0f, factor);
        }
    }

    public static void Contrast(Span<float> r, Span<float> g, Span<float> b, float factor)
    {
        var sum = 0.0;
        for (var i = 0; i < r.Length; i++) sum += Grey(r[i], g[i], b[i]);
        var mean = (float)(sum / r.Length);
        for (var i = 0; i < r.Length; i++)
        {
            r[i] = Blend(r[i], mean, factor);
            g[i] = Blend(g[i], mean, factor);
            b[i] = Blend(b[i], mean, factor);
        }
    }

    public static void Saturation(Span<float> r, Span<float> g, Span<float> b, float factor)
    {
        for (var i = 0; i < r.Length; i++)
        {
            var grey = Grey(r[i], g[i], b[i]);
            r[i] = Blend(r[i], grey, factor);
            g[i] = Blend(g[i], grey, factor);
            b[i] = Blend(b[i], grey, factor);
        }
    }

    public static void Hue(Span<float> r, Span<float> g, Span<float> b, float shift)
    {
        for (var i = 0; i < r.Length; i++)
        {
            var (h, s, v) = ToHsv(r[i], g[i], b[i]);
            h += shift;
            h -= MathF.Floor(h);
            (r[i], g[i], b[i]) = FromHsv(h, s, v);
        }
    }

    /// <summary>Hue in turns [0, 1), saturation and value in [0, 1].</summary>
    public static (float H, float S, float V) ToHsv(float r, float g, float b)
    {
        var max = MathF.Max(r, MathF.Max(g, b));
        var min = MathF.Min(r, MathF.Min(g, b));
        var chroma = max - min;
        if (chroma <= 0) return (0f, 0f, max);
        var s = chroma / max;
        float h;
        if (max == r) h = (g - b) / chroma;
        else if (max == g) h = 2f + (b - r) / chroma;
        else h = 4f + (r - g) / chroma;
        h /= 6f;
        h -= MathF.Floor(h);
        return (h, s, max);
    }

    public static (float R, float G, float B) FromHsv(float h, float s, float v)
    {
        var h6 = h * 6f;
        var sector = (int)MathF.Floor(h6);
        var f = h6 - sector;
        var p = Math.Clamp(v * (1f - s), 0f, 1f);
        var q = Math.Clamp(v * (1f - s * f), 0f, 1f);
        var t = Math.Clamp(v * (1f - s * (1f - f)), 0f, 1f);
        return (((sector % 6) + 6) % 6) switch
        {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
    }

    private static float Blend(float image, float reference, float factor) =>
        Math.Clamp(factor * image + (1f - factor) * reference, 0f, 1f);
}
