namespace Microsoft.ML.TaskVectors.Text;

/// <summary>
/// GPT-2 and CLIP's reversible map from the 256 byte values to printable characters: printable
/// Latin-1 bytes stand for themselves, the others (controls, space, soft hyphen) are moved to
/// U+0100 onwards. Byte-level BPE works on these characters so every byte has a visible token.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] s_byteToChar = new char[256];
    private static readonly Dictionary<char, byte> s_charToByte = new(256);

    static ByteLevelAlphabet()
    {
        var order = new List<int>(256);
        for (int b = '!'; b <= '~'; b++) order.Add(b);
        for (int b = '¡'; b <= '¬'; b++) order.Add(b);
        for (int b = '®'; b <= 'ÿ'; b++) order.Add(b);
        var chars = order.Select(b => (char)b).ToList();
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            if (order.Contains(b)) continue;
            order.Add(b);
            chars.Add((char)(256 + shifted++));
        }
        for (int i = 0; i < 256; i++)
        {
            s_byteToChar[order[i]] = chars[i];
            s_charToByte[chars[i]] = (byte)order[i];
        }
        Characters = chars;
    }

    /// <summary>The 256 characters in CLIP's vocabulary order (the printable bytes first, then the moved ones).</summary>
    public static IReadOnlyList<char> Characters { get; }

    /// <summary>The character standing for <paramref name="b"/>.</summary>
    public static char ToChar(byte b) => s_byteToChar[b];

    /// <summary>The byte a character stands for; false for characters outside the alphabet.</summary>
    public static bool TryGetByte(char c, out byte b) => s_charToByte.TryGetValue(c, out b);
}
