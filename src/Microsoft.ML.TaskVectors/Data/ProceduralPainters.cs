namespace Microsoft.ML.TaskVectors.Data;

/// <summary>
/// The painters of the procedural families. Each draws a random background, then its class's content with random
/// position, scale, rotation and colours, then pixel noise, every parameter from the canvas's random stream in a
/// fixed order. Geometry is in image units, so a seed gives the same scene at any image size.
/// </summary>
internal static class ProceduralPainters
{
    private const float Sqrt1Half = 0.70710677f, Sqrt3Half = 0.8660254f;

    public static readonly string[] ShapeNames = ["circle", "square", "triangle", "cross", "diamond", "ring"];

    public static void Shapes(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var foreground = random.ContrastingColour(Background(canvas));
        var radius = random.Uniform(0.16f, 0.28f);
        canvas.Paint(Place(random, Shape(label, radius), Extent(label, radius), spread: 0.3f), foreground);
        Finish(canvas);
    }

    public static void Sizes(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var foreground = random.ContrastingColour(Background(canvas));
        // Gaps between the ranges keep the classes apart; the shape is a nuisance.
        var radius = label switch { 0 => random.Uniform(0.06f, 0.11f), 1 => random.Uniform(0.16f, 0.22f), _ => random.Uniform(0.28f, 0.36f) };
        var kind = random.Next(3); // circle, square or triangle
        canvas.Paint(Place(random, Shape(kind, radius), Extent(kind, radius), spread: 0.3f), foreground);
        Finish(canvas);
    }

    public static void Stripes(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var background = Background(canvas);
        // The normal of the bands: horizontal bands vary along y; "falling" bands run from top-left to bottom-right.
        var (nx, ny) = label switch
        {
            0 => (0f, 1f),
            1 => (1f, 0f),
            2 => (Sqrt1Half, -Sqrt1Half),
            _ => (Sqrt1Half, Sqrt1Half),
        };
        (nx, ny) = random.Direction(nx, ny, 0.15f);
        var period = random.Uniform(0.12f, 0.3f);
        var phase = random.NextFloat();
        var colour = random.ContrastingColour(background, 0.25f);
        canvas.Paint((x, y) => Band((x * nx + y * ny) / period + phase) * period, colour);
        Finish(canvas);
    }

    public static readonly (string Name, float Hue)[] Hues =
    [
        ("red", 0f), ("orange", 0.075f), ("yellow", 0.155f), ("green", 0.33f),
        ("cyan", 0.5f), ("blue", 0.64f), ("purple", 0.76f), ("magenta", 0.88f),
    ];

    public static void Colours(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var hue = Hues[label].Hue + random.Uniform(-0.02f, 0.02f);
        var colour = Rgb.FromHsv(hue, random.Uniform(0.6f, 1f), random.Uniform(0.55f, 1f));
        canvas.Fill(colour);
        Light(canvas, colour);
        // A few small blobs of any colour: the class is the dominant hue, not the only one.
        for (int i = random.Next(4); i > 0; i--)
        {
            var blob = random.Colour();
            var radius = random.Uniform(0.05f, 0.1f);
            canvas.Paint(Place(random, Circle(radius), radius, spread: 0f), blob);
        }
        Finish(canvas);
    }

    public static readonly string[] CountNames = ["one", "two", "three", "four", "five"];

    public static void Counts(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var foreground = random.ContrastingColour(Background(canvas));
        var radius = random.Uniform(0.06f, 0.1f);
        var centres = new (float X, float Y)[label + 1];
        // Rejection sampling for blobs that do not touch; a crowded draw retries smaller, so the count always shows.
        for (int placed = 0, attempts = 0; placed < centres.Length; attempts++)
        {
            if (attempts == 200)
            {
                (placed, attempts, radius) = (0, 0, radius * 0.85f);
            }
            var c = (X: random.Uniform(radius + 0.03f, 0.97f - radius), Y: random.Uniform(radius + 0.03f, 0.97f - radius));
            var clear = true;
            for (int j = 0; j < placed && clear; j++)
            {
                float dx = c.X - centres[j].X, dy = c.Y - centres[j].Y, gap = 2 * radius + 0.04f;
                clear = dx * dx + dy * dy >= gap * gap;
            }
            if (clear) centres[placed++] = c;
        }
        foreach (var (cx, cy) in centres)
            canvas.Paint((x, y) => Length(x - cx, y - cy) - radius, foreground);
        Finish(canvas);
    }

    public static readonly string[] QuadrantNames = ["top left", "top right", "bottom left", "bottom right"];

    public static void Quadrant(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var foreground = random.ContrastingColour(Background(canvas));
        var radius = random.Uniform(0.08f, 0.15f);
        var kind = random.Next(2); // circle or square
        float left = label % 2 * 0.5f, top = label / 2 * 0.5f, extent = Extent(kind, radius) + 0.03f;
        var cx = left + random.Uniform(extent, 0.5f - extent);
        var cy = top + random.Uniform(extent, 0.5f - extent);
        var shape = Shape(kind, radius);
        canvas.Paint((x, y) => shape(x - cx, y - cy), foreground);
        Finish(canvas);
    }

    public static readonly string[] TextureNames = ["checkerboard", "dots", "grid", "noise", "gradient"];

    public static void Textures(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var colour = random.ContrastingColour(Background(canvas), 0.25f);
        var cell = random.Uniform(0.1f, 0.2f);
        float ox = random.NextFloat(), oy = random.NextFloat();
        var (c, s) = random.Direction(1f, 0f, 0.2f);
        // Cell coordinates of a point: rotated, scaled and shifted, so the lattice is never pixel-aligned the same way.
        void PaintLattice(Func<float, float, float> distanceInCells) => canvas.Paint((x, y) =>
            distanceInCells((x * c + y * s) / cell + ox, (y * c - x * s) / cell + oy) * cell, colour);
        switch (label)
        {
            case 0:
                PaintLattice((u, v) => ((int)MathF.Floor(u) + (int)MathF.Floor(v)) % 2 == 0 ? -ToCellBorder(u, v) : ToCellBorder(u, v));
                break;
            case 1:
                var dot = random.Uniform(0.2f, 0.32f);
                PaintLattice((u, v) => Length(u - MathF.Floor(u) - 0.5f, v - MathF.Floor(v) - 0.5f) - dot);
                break;
            case 2:
                var line = random.Uniform(0.07f, 0.12f);
                PaintLattice((u, v) => ToCellBorder(u, v) - line);
                break;
            case 3:
                // Value noise without interpolation: each small square takes its own random mix of the two colours.
                var key = random.NextUInt64();
                var grain = random.Uniform(10f, 16f);
                canvas.Blend((x, y) =>
                {
                    var cellIndex = (ulong)(uint)(int)MathF.Floor(x * grain) << 32 | (uint)(int)MathF.Floor(y * grain);
                    return (TaskVectors.StableHash.Mix(key ^ cellIndex) >> 40) * (1f / (1 << 24));
                }, colour);
                break;
            default:
                var (gx, gy) = AnyDirection(random);
                var steepness = random.Uniform(1.2f, 2f);
                canvas.Blend((x, y) => Math.Clamp(((x - 0.5f) * gx + (y - 0.5f) * gy) * steepness + 0.5f, 0f, 1f), colour);
                break;
        }
        Finish(canvas);
    }

    /// <summary>Seven-segment patterns of 0 … 9, bit k for segment "abcdefg"[k] (a top, then clockwise, g the middle).</summary>
    private static readonly int[] Segments = [0b0111111, 0b0000110, 0b1011011, 0b1001111, 0b1100110, 0b1101101, 0b1111101, 0b0000111, 0b1111111, 0b1101111];

    public static void Digits(ProceduralCanvas canvas, int label)
    {
        var random = canvas.Random;
        var foreground = random.ContrastingColour(Background(canvas));
        float width = random.Uniform(0.24f, 0.36f), height = width * random.Uniform(1.7f, 2.05f), thickness = width * random.Uniform(0.16f, 0.24f);
        var shear = random.Uniform(-0.2f, 0.2f);
        float hw = width / 2, hh = height / 2, ht = thickness / 2;
        (float X, float Y, float HalfX, float HalfY)[] all =
        [
            (0, -hh, hw, ht), (hw, -hh / 2, ht, hh / 2), (hw, hh / 2, ht, hh / 2), (0, hh, hw, ht),
            (-hw, hh / 2, ht, hh / 2), (-hw, -hh / 2, ht, hh / 2), (0, 0, hw, ht),
        ];
        var lit = all.Where((_, k) => (Segments[label] >> k & 1) != 0).ToArray();
        float ex = hw + ht + MathF.Abs(shear) * hh + 0.02f, ey = hh + ht + 0.02f;
        float cx = random.Uniform(ex, 1 - ex), cy = random.Uniform(ey, 1 - ey);
        canvas.Paint((x, y) =>
        {
            float py = y - cy, px = x - cx + shear * py;
            var d = float.MaxValue;
            foreach (var segment in lit) d = MathF.Min(d, Box(px - segment.X, py - segment.Y, segment.HalfX, segment.HalfY));
            return d;
        }, foreground);
        Finish(canvas);
    }

    /// <summary>A random background colour with a soft lighting gradient; returns the colour.</summary>
    private static Rgb Background(ProceduralCanvas canvas)
    {
        var colour = canvas.Random.Colour(0f, 0.7f, 0.08f, 0.95f);
        canvas.Fill(colour);
        Light(canvas, colour);
        return colour;
    }

    /// <summary>Lighting: up to 35 % of a lighter or darker shade, ramped along a random direction.</summary>
    private static void Light(ProceduralCanvas canvas, Rgb colour)
    {
        var random = canvas.Random;
        var shade = random.NextBool() ? Rgb.Lerp(colour, new Rgb(1f, 1f, 1f), 0.6f) : Rgb.Lerp(colour, new Rgb(0f, 0f, 0f), 0.6f);
        var (gx, gy) = AnyDirection(random);
        var strength = random.Uniform(0f, 0.35f);
        canvas.Blend((x, y) => strength * Math.Clamp((x - 0.5f) * gx + (y - 0.5f) * gy + 0.5f, 0f, 1f), shade);
    }

    /// <summary>Pixel noise of a random strength.</summary>
    private static void Finish(ProceduralCanvas canvas) => canvas.AddNoise(canvas.Random.Uniform(0.02f, 0.08f));

    private static (float X, float Y) AnyDirection(ProceduralRandom random)
    {
        // One of the four axes, then up to ±45°: every direction, without sin/cos.
        var (x, y) = random.Next(4) switch { 0 => (1f, 0f), 1 => (0f, 1f), 2 => (-1f, 0f), _ => (0f, -1f) };
        return random.Direction(x, y, 1f);
    }

    /// <summary>
    /// A shape at a random position (fully inside the image) and rotation within ±<paramref name="spread"/> radians,
    /// as a distance function of image coordinates.
    /// </summary>
    private static Func<float, float, float> Place(ProceduralRandom random, Func<float, float, float> shape, float extent, float spread)
    {
        var (c, s) = random.Direction(1f, 0f, spread);
        float cx = random.Uniform(extent + 0.02f, 0.98f - extent), cy = random.Uniform(extent + 0.02f, 0.98f - extent);
        return (x, y) =>
        {
            float dx = x - cx, dy = y - cy;
            return shape(dx * c + dy * s, dy * c - dx * s);
        };
    }

    /// <summary>Shape <paramref name="kind"/> of <see cref="ShapeNames"/> around the origin, of about <paramref name="radius"/>.</summary>
    private static Func<float, float, float> Shape(int kind, float radius)
    {
        var half = 0.8f * radius; // squares of about a circle's area
        return kind switch
        {
            0 => Circle(radius),
            1 => (x, y) => Box(x, y, half, half),
            // Equilateral, pointing up, centroid at the origin: the largest of its three edges' signed distances.
            2 => (x, y) => MathF.Max(y - 0.575f * radius, Sqrt3Half * MathF.Abs(x) - 0.5f * y - 0.575f * radius),
            3 => (x, y) => MathF.Min(Box(x, y, radius, 0.3f * radius), Box(x, y, 0.3f * radius, radius)),
            4 => (x, y) => Box((x + y) * Sqrt1Half, (y - x) * Sqrt1Half, half, half),
            _ => (x, y) => MathF.Abs(Length(x, y) - 0.72f * radius) - 0.28f * radius,
        };
    }

    /// <summary>How far shape <paramref name="kind"/> reaches from its centre, whatever its rotation.</summary>
    private static float Extent(int kind, float radius) => kind switch
    {
        1 or 4 => 0.8f * radius * 1.4142135f,
        2 => 1.15f * radius,
        3 => radius * 1.0440307f, // the corner (r, 0.3 r)
        _ => radius,
    };

    private static Func<float, float, float> Circle(float radius) => (x, y) => Length(x, y) - radius;

    /// <summary>Signed distance to a box of half-sizes (<paramref name="hx"/>, <paramref name="hy"/>) centred on the origin.</summary>
    private static float Box(float x, float y, float hx, float hy)
    {
        float qx = MathF.Abs(x) - hx, qy = MathF.Abs(y) - hy;
        return Length(MathF.Max(qx, 0f), MathF.Max(qy, 0f)) + MathF.Min(MathF.Max(qx, qy), 0f);
    }

    /// <summary>Distance, in cells, from lattice point (<paramref name="u"/>, <paramref name="v"/>) to the border of its cell.</summary>
    private static float ToCellBorder(float u, float v)
    {
        float fu = u - MathF.Floor(u), fv = v - MathF.Floor(v);
        return MathF.Min(MathF.Min(fu, 1 - fu), MathF.Min(fv, 1 - fv));
    }

    /// <summary>Signed distance, in periods, to a band covering the middle half of each period of <paramref name="t"/>.</summary>
    private static float Band(float t) => MathF.Abs(t - MathF.Floor(t) - 0.5f) - 0.25f;

    private static float Length(float x, float y) => MathF.Sqrt(x * x + y * y);
}
