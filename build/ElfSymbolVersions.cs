// libstdc++ compatibility step for TorchSharp's libLibTorchSharp.so (see docs/linux-compatibility.md).
//
// One file on purpose: RoslynCodeTaskFactory accepts a single Code element, so the pure ELF code and the
// MSBuild task live together. The test project compiles this file with TASKVECTORS_NO_MSBUILD, which drops
// the task and with it every MSBuild type.
//
// The task factory compiles against the netstandard 2.0 reference assemblies shipped with MSBuild:
// no Span, no BinaryPrimitives, no File.Move(overwrite), no UnixFileMode at compile time.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
#if !TASKVECTORS_NO_MSBUILD
using Microsoft.Build.Framework;
#endif

namespace Microsoft.ML.TaskVectors.Build
{
    /// <summary>The file is not an ELF64 little-endian image, or its version sections are malformed.</summary>
    public sealed class ElfFormatException : Exception
    {
        /// <summary>Creates the exception.</summary>
        public ElfFormatException(string message) : base(message) { }
    }

    /// <summary>One Elf64_Vernaux entry of <c>.gnu.version_r</c>: a symbol version required from a shared library.</summary>
    public sealed class ElfVersionRequirement
    {
        internal ElfVersionRequirement(string file, string name, ushort flags, ushort index, long flagsOffset, IReadOnlyList<string> symbols)
        {
            File = file;
            Name = name;
            Flags = flags;
            Index = index;
            FlagsOffset = flagsOffset;
            Symbols = symbols;
        }

        /// <summary>The needed library (vn_file), e.g. <c>libstdc++.so.6</c>.</summary>
        public string File { get; }

        /// <summary>The version name (vna_name), e.g. <c>GLIBCXX_3.4.32</c>.</summary>
        public string Name { get; }

        /// <summary>vna_flags.</summary>
        public ushort Flags { get; }

        /// <summary>vna_other: the version index that <c>.gnu.version</c> uses for symbols bound to this version.</summary>
        public ushort Index { get; }

        /// <summary>File offset of the two-byte vna_flags field.</summary>
        public long FlagsOffset { get; }

        /// <summary>True when VER_FLG_WEAK is set: the dynamic loader tolerates the version being absent.</summary>
        public bool IsWeak => (Flags & ElfSymbolVersions.VerFlagWeak) != 0;

        /// <summary>Names of the <c>.dynsym</c> symbols whose <c>.gnu.version</c> entry is <see cref="Index"/>.</summary>
        public IReadOnlyList<string> Symbols { get; }

        /// <inheritdoc/>
        public override string ToString() => Name + " (" + File + (IsWeak ? ", weak" : "") + ")";
    }

    /// <summary>Symbol-versioning view of an ELF64 little-endian shared library (verneed, verdef, versym, dynsym).</summary>
    public sealed class ElfSymbolVersions
    {
        /// <summary>VER_FLG_WEAK.</summary>
        public const ushort VerFlagWeak = 0x2;

        const ushort VerFlagBase = 0x1;
        const uint ShtDynsym = 11;
        const uint ShtGnuVerdef = 0x6ffffffd;
        const uint ShtGnuVerneed = 0x6ffffffe;
        const uint ShtGnuVersym = 0x6fffffff;

        ElfSymbolVersions(ushort machine, IReadOnlyList<ElfVersionRequirement> requirements, IReadOnlyList<string> definitions)
        {
            Machine = machine;
            Requirements = requirements;
            Definitions = definitions;
        }

        /// <summary>e_machine (62 = x86-64, 183 = AArch64).</summary>
        public ushort Machine { get; }

        /// <summary>Every vernaux entry, in file order.</summary>
        public IReadOnlyList<ElfVersionRequirement> Requirements { get; }

        /// <summary>Version names defined by <c>.gnu.version_d</c> (the base entry, i.e. the soname, excluded).</summary>
        public IReadOnlyList<string> Definitions { get; }

        /// <summary>Parses the file at <paramref name="path"/>.</summary>
        public static ElfSymbolVersions ReadFile(string path) => Read(System.IO.File.ReadAllBytes(path));

        /// <summary>Parses an in-memory ELF image.</summary>
        public static ElfSymbolVersions Read(byte[] image)
        {
            var r = new Reader(image);
            if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
                throw new ElfFormatException("Not an ELF file.");
            if (image[4] != 2 || image[5] != 1)
                throw new ElfFormatException("Only ELF64 little-endian images are supported.");

            ushort machine = r.U16(0x12);
            long shoff = r.Offset(0x28);
            int shentsize = r.U16(0x3A);
            long shnum = r.U16(0x3C);
            if (shoff == 0)
                throw new ElfFormatException("The image has no section headers.");
            if (shentsize < 64)
                throw new ElfFormatException("Unexpected section header size " + shentsize + ".");
            if (shnum == 0)
                shnum = r.Offset(shoff + 32); // SHN_UNDEF's sh_size holds the real count when e_shnum overflows.

            var sections = new Section[shnum];
            for (long i = 0; i < shnum; i++)
            {
                long h = shoff + i * shentsize;
                sections[i] = new Section(
                    type: r.U32(h + 4),
                    offset: r.Offset(h + 24),
                    size: r.Offset(h + 32),
                    link: r.U32(h + 40),
                    info: r.U32(h + 44),
                    entsize: r.Offset(h + 56));
                r.Check(sections[i].Offset, sections[i].Type == 8 /* SHT_NOBITS */ ? 0 : sections[i].Size);
            }

            var symbolsByIndex = ReadSymbolVersions(r, sections);
            var requirements = new List<ElfVersionRequirement>();
            var definitions = new List<string>();
            foreach (var s in sections)
            {
                if (s.Type == ShtGnuVerneed)
                    ReadVerneed(r, sections, s, symbolsByIndex, requirements);
                else if (s.Type == ShtGnuVerdef)
                    ReadVerdef(r, sections, s, definitions);
            }
            return new ElfSymbolVersions(machine, requirements, definitions);
        }

        static void ReadVerneed(Reader r, Section[] sections, Section s, Dictionary<int, List<string>> symbolsByIndex, List<ElfVersionRequirement> into)
        {
            var strtab = LinkedSection(sections, s);
            long end = s.Offset + s.Size;
            long vn = s.Offset;
            // sh_info is the entry count; vn_next == 0 also ends the chain. Honour whichever comes first.
            for (uint n = 0; s.Info == 0 || n < s.Info; n++)
            {
                r.CheckWithin(vn, 16, s.Offset, end);
                int cnt = r.U16(vn + 2);
                string file = r.String(strtab, r.U32(vn + 4));
                long aux = vn + r.U32(vn + 8);
                for (int j = 0; j < cnt; j++)
                {
                    r.CheckWithin(aux, 16, s.Offset, end);
                    ushort flags = r.U16(aux + 4);
                    ushort other = r.U16(aux + 6);
                    string name = r.String(strtab, r.U32(aux + 8));
                    IReadOnlyList<string> symbols = symbolsByIndex.TryGetValue(other, out var list) ? list : (IReadOnlyList<string>)Array.Empty<string>();
                    into.Add(new ElfVersionRequirement(file, name, flags, other, aux + 4, symbols));
                    uint next = r.U32(aux + 12);
                    if (next == 0)
                        break;
                    aux += next;
                }
                uint vnNext = r.U32(vn + 12);
                if (vnNext == 0)
                    break;
                vn += vnNext;
            }
        }

        static void ReadVerdef(Reader r, Section[] sections, Section s, List<string> into)
        {
            var strtab = LinkedSection(sections, s);
            long end = s.Offset + s.Size;
            long vd = s.Offset;
            for (uint n = 0; s.Info == 0 || n < s.Info; n++)
            {
                r.CheckWithin(vd, 20, s.Offset, end);
                ushort flags = r.U16(vd + 2);
                int cnt = r.U16(vd + 6);
                if (cnt > 0 && (flags & VerFlagBase) == 0)
                {
                    // The first verdaux names the version; later ones name its parents.
                    long aux = vd + r.U32(vd + 12);
                    r.CheckWithin(aux, 8, s.Offset, end);
                    into.Add(r.String(strtab, r.U32(aux)));
                }
                uint next = r.U32(vd + 16);
                if (next == 0)
                    break;
                vd += next;
            }
        }

        // Maps a version index (versym & 0x7fff) to the dynsym names that use it.
        static Dictionary<int, List<string>> ReadSymbolVersions(Reader r, Section[] sections)
        {
            var result = new Dictionary<int, List<string>>();
            foreach (var versym in sections.Where(x => x.Type == ShtGnuVersym))
            {
                var dynsym = LinkedSection(sections, versym);
                if (dynsym.Type != ShtDynsym)
                    throw new ElfFormatException(".gnu.version is not linked to .dynsym.");
                var strtab = LinkedSection(sections, dynsym);
                long entsize = dynsym.EntSize == 0 ? 24 : dynsym.EntSize;
                long count = Math.Min(versym.Size / 2, dynsym.Size / entsize);
                for (long i = 1; i < count; i++)
                {
                    int index = r.U16(versym.Offset + 2 * i) & 0x7fff;
                    if (index < 2)
                        continue; // 0 = local, 1 = global unversioned.
                    string name = r.String(strtab, r.U32(dynsym.Offset + i * entsize));
                    if (!result.TryGetValue(index, out var names))
                        result[index] = names = new List<string>();
                    names.Add(name);
                }
            }
            return result;
        }

        static Section LinkedSection(Section[] sections, Section s)
        {
            if (s.Link == 0 || s.Link >= sections.Length)
                throw new ElfFormatException("Section sh_link " + s.Link + " is out of range.");
            return sections[s.Link];
        }

        readonly struct Section
        {
            public Section(uint type, long offset, long size, uint link, uint info, long entsize)
            {
                Type = type; Offset = offset; Size = size; Link = link; Info = info; EntSize = entsize;
            }
            public uint Type { get; }
            public long Offset { get; }
            public long Size { get; }
            public uint Link { get; }
            public uint Info { get; }
            public long EntSize { get; }
        }

        sealed class Reader
        {
            readonly byte[] _b;
            public Reader(byte[] bytes) { _b = bytes; }

            public void Check(long offset, long length)
            {
                if (offset < 0 || length < 0 || offset > _b.Length || length > _b.Length - offset)
                    throw new ElfFormatException("Offset " + offset + " (+" + length + ") is outside the file.");
            }

            public void CheckWithin(long offset, long length, long start, long end)
            {
                if (offset < start || offset + length > end)
                    throw new ElfFormatException("Version entry at " + offset + " runs outside its section.");
                Check(offset, length);
            }

            public ushort U16(long o) { Check(o, 2); return (ushort)(_b[o] | _b[o + 1] << 8); }
            public uint U32(long o) { Check(o, 4); return (uint)(_b[o] | _b[o + 1] << 8 | _b[o + 2] << 16 | _b[o + 3] << 24); }

            public long Offset(long o)
            {
                Check(o, 8);
                ulong v = U32(o) | (ulong)U32(o + 4) << 32;
                if (v > long.MaxValue)
                    throw new ElfFormatException("Offset field at " + o + " is out of range.");
                return (long)v;
            }

            public string String(Section strtab, uint offset)
            {
                long start = strtab.Offset + offset;
                long end = strtab.Offset + strtab.Size;
                if (offset >= strtab.Size)
                    throw new ElfFormatException("String offset " + offset + " is outside its string table.");
                long p = start;
                while (p < end && _b[p] != 0)
                    p++;
                if (p == end)
                    throw new ElfFormatException("Unterminated string at " + start + ".");
                return Encoding.UTF8.GetString(_b, (int)start, (int)(p - start));
            }
        }
    }

    /// <summary>Outcome of <see cref="LibStdCxxCompat.Plan"/> and <see cref="LibStdCxxCompat.PatchFile"/>.</summary>
    public enum LibStdCxxCompatStatus
    {
        /// <summary>The host libstdc++ defines every version the library requires from it.</summary>
        NotNeeded,

        /// <summary>Versions the host lacks were weakened (now, or already by an earlier run).</summary>
        Applied,

        /// <summary>A missing version binds symbols outside the allow-list; nothing was changed.</summary>
        Refused,
    }

    /// <summary>What the library needs from libstdc++ that the host lacks, and what to do about it.</summary>
    public sealed class LibStdCxxCompatPlan
    {
        internal LibStdCxxCompatPlan(LibStdCxxCompatStatus status, string hostLibStdCxx,
            IReadOnlyList<ElfVersionRequirement> missing, IReadOnlyList<ElfVersionRequirement> toWeaken, IReadOnlyList<ElfVersionRequirement> refused)
        {
            Status = status;
            HostLibStdCxx = hostLibStdCxx;
            Missing = missing;
            ToWeaken = toWeaken;
            Refused = refused;
        }

        /// <summary>Overall decision.</summary>
        public LibStdCxxCompatStatus Status { get; }

        /// <summary>Path of the host libstdc++ the decision was made against.</summary>
        public string HostLibStdCxx { get; }

        /// <summary>Required libstdc++ versions the host does not define (weak or not).</summary>
        public IReadOnlyList<ElfVersionRequirement> Missing { get; }

        /// <summary>Missing versions that are still strong and may be weakened.</summary>
        public IReadOnlyList<ElfVersionRequirement> ToWeaken { get; }

        /// <summary>Missing, still-strong versions that bind symbols outside the allow-list.</summary>
        public IReadOnlyList<ElfVersionRequirement> Refused { get; }
    }

    /// <summary>Result of <see cref="LibStdCxxCompat.PatchFile"/>.</summary>
    public sealed class LibStdCxxCompatResult
    {
        internal LibStdCxxCompatResult(LibStdCxxCompatPlan plan, bool libraryRewritten, string markerPath)
        {
            Plan = plan;
            LibraryRewritten = libraryRewritten;
            MarkerPath = markerPath;
        }

        /// <summary>The decision that was acted on.</summary>
        public LibStdCxxCompatPlan Plan { get; }

        /// <summary>True only when this call replaced the library file.</summary>
        public bool LibraryRewritten { get; }

        /// <summary>The marker written next to the library.</summary>
        public string MarkerPath { get; }
    }

    /// <summary>Decides whether libLibTorchSharp.so needs its missing libstdc++ versions weakened, and does it.</summary>
    public static class LibStdCxxCompat
    {
        /// <summary>Soname whose version requirements are checked.</summary>
        public const string LibStdCxxSoname = "libstdc++.so.6";

        /// <summary>
        /// Symbols that may lose their version: <c>std::ios_base_library_init()</c> is referenced by GCC 13.2+ objects
        /// to force iostream initialisation ordering and is never called through the PLT.
        /// </summary>
        public const string DefaultAllowedSymbols = "_ZSt21ios_base_library_initv";

        /// <summary>Suffix appended to the library path to name the marker file.</summary>
        public const string MarkerSuffix = ".compat.json";

        const ushort MachineX8664 = 62;
        const ushort MachineAArch64 = 183;

        /// <summary>Compares the library's libstdc++ requirements with the versions the host defines.</summary>
        public static LibStdCxxCompatPlan Plan(ElfSymbolVersions library, ElfSymbolVersions host, string hostPath, IEnumerable<string> allowedSymbols)
        {
            var defined = new HashSet<string>(host.Definitions, StringComparer.Ordinal);
            var allowed = new HashSet<string>(allowedSymbols.Select(s => s.Trim()).Where(s => s.Length > 0), StringComparer.Ordinal);
            var missing = library.Requirements
                .Where(v => v.File == LibStdCxxSoname && !defined.Contains(v.Name))
                .ToList();
            var strong = missing.Where(v => !v.IsWeak).ToList();
            var refused = strong.Where(v => !v.Symbols.All(allowed.Contains)).ToList();
            var toWeaken = refused.Count == 0 ? strong : new List<ElfVersionRequirement>();

            var status = missing.Count == 0 ? LibStdCxxCompatStatus.NotNeeded
                : refused.Count > 0 ? LibStdCxxCompatStatus.Refused
                : LibStdCxxCompatStatus.Applied;
            return new LibStdCxxCompatPlan(status, hostPath, missing, toWeaken, refused);
        }

        /// <summary>Sets VER_FLG_WEAK on the given vernaux entries of <paramref name="image"/> in memory.</summary>
        public static void Weaken(byte[] image, IEnumerable<ElfVersionRequirement> versions)
        {
            foreach (var v in versions)
            {
                if (v.FlagsOffset < 0 || v.FlagsOffset + 2 > image.Length)
                    throw new ElfFormatException("vna_flags offset " + v.FlagsOffset + " is outside the file.");
                ushort flags = (ushort)(image[v.FlagsOffset] | image[v.FlagsOffset + 1] << 8);
                flags |= ElfSymbolVersions.VerFlagWeak;
                image[v.FlagsOffset] = (byte)flags;
                image[v.FlagsOffset + 1] = (byte)(flags >> 8);
            }
        }

        /// <summary>
        /// Plans and, when allowed and needed, weakens the missing versions of the library at <paramref name="libraryPath"/>
        /// in place (temp file + rename; mode and modification time kept so the SDK's copy step still sees it as up to date),
        /// then writes the marker <c>&lt;library&gt;.compat.json</c>. Neither file is rewritten when already up to date.
        /// </summary>
        /// <param name="libraryPath">The library to check and patch.</param>
        /// <param name="hostLibStdCxxPath">The libstdc++.so.6 the library will be loaded against.</param>
        /// <param name="allowedSymbols">Symbols whose version may be weakened.</param>
        /// <param name="stampPrefix">
        /// When set (and the step was not refused), the marker records this prefix followed by the library's final local
        /// last-write-time ticks, which lets the build skip the check while neither the library nor the settings changed.
        /// </param>
        public static LibStdCxxCompatResult PatchFile(string libraryPath, string hostLibStdCxxPath, IEnumerable<string> allowedSymbols, string? stampPrefix = null)
        {
            byte[] image = System.IO.File.ReadAllBytes(libraryPath);
            var library = ElfSymbolVersions.Read(image);
            var host = ElfSymbolVersions.ReadFile(hostLibStdCxxPath);
            var plan = Plan(library, host, hostLibStdCxxPath, allowedSymbols);

            bool rewritten = false;
            if (plan.Status == LibStdCxxCompatStatus.Applied && plan.ToWeaken.Count > 0)
            {
                Weaken(image, plan.ToWeaken);
                ReplaceAtomically(libraryPath, image, keepTimestamps: true);
                rewritten = true;
            }

            string marker = libraryPath + MarkerSuffix;
            // A refusal is not stamped, so every build repeats the check and its warning until it is resolved.
            string? stamp = stampPrefix == null || plan.Status == LibStdCxxCompatStatus.Refused
                ? null
                : stampPrefix + System.IO.File.GetLastWriteTime(libraryPath).Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture);
            string json = MarkerJson(plan, Path.GetFileName(libraryPath), stamp);
            if (!System.IO.File.Exists(marker) || System.IO.File.ReadAllText(marker) != json)
                ReplaceAtomically(marker, Encoding.UTF8.GetBytes(json), keepTimestamps: false);
            return new LibStdCxxCompatResult(plan, rewritten, marker);
        }

        /// <summary>
        /// Finds the libstdc++.so.6 the dynamic loader would use for a library of ELF machine <paramref name="machine"/>:
        /// the copy already mapped into this process (the dotnet host links libstdc++), then LD_LIBRARY_PATH,
        /// /etc/ld.so.cache and the standard library directories. Returns null when none matches.
        /// </summary>
        public static string? FindHostLibStdCxx(ushort machine)
        {
            foreach (var candidate in HostLibStdCxxCandidates(machine))
            {
                if (System.IO.File.Exists(candidate) && MachineOf(candidate) == machine)
                    return candidate;
            }
            return null;
        }

        static IEnumerable<string> HostLibStdCxxCandidates(ushort machine)
        {
            foreach (var mapped in MappedLibStdCxx())
                yield return mapped;

            var ldLibraryPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            if (!string.IsNullOrEmpty(ldLibraryPath))
            {
                foreach (var dir in ldLibraryPath!.Split(new[] { ':' }, StringSplitOptions.RemoveEmptyEntries))
                    yield return Path.Combine(dir, LibStdCxxSoname);
            }

            foreach (var cached in LdSoCacheEntries(LibStdCxxSoname))
                yield return cached;

            string triplet = machine == MachineAArch64 ? "aarch64-linux-gnu" : machine == MachineX8664 ? "x86_64-linux-gnu" : "";
            if (triplet.Length > 0)
            {
                yield return "/lib/" + triplet + "/" + LibStdCxxSoname;
                yield return "/usr/lib/" + triplet + "/" + LibStdCxxSoname;
            }
            foreach (var dir in new[] { "/lib64", "/usr/lib64", "/lib", "/usr/lib" })
                yield return dir + "/" + LibStdCxxSoname;
        }

        static IEnumerable<string> MappedLibStdCxx()
        {
            string[] lines;
            try { lines = System.IO.File.ReadAllLines("/proc/self/maps"); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { yield break; }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var line in lines)
            {
                int slash = line.IndexOf('/');
                if (slash < 0)
                    continue;
                string path = line.Substring(slash).Trim();
                if (Path.GetFileName(path).StartsWith(LibStdCxxSoname, StringComparison.Ordinal) && seen.Add(path))
                    yield return path;
            }
        }

        // glibc's "glibc-ld.so.cache1.1" format: 48-byte header, then 24-byte entries whose key/value are
        // offsets from the start of the file.
        static IEnumerable<string> LdSoCacheEntries(string soname)
        {
            byte[] cache;
            try { cache = System.IO.File.ReadAllBytes("/etc/ld.so.cache"); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { yield break; }

            const string Magic = "glibc-ld.so.cache1.1";
            int start = IndexOf(cache, Encoding.ASCII.GetBytes(Magic)); // an old-format block may come first
            if (start < 0 || cache.Length < start + 48)
                yield break;
            uint nlibs = U32(cache, start + 20);
            for (long i = 0; i < nlibs; i++)
            {
                long e = start + 48 + i * 24;
                if (e + 24 > cache.Length)
                    yield break;
                string? key = CString(cache, start + U32(cache, e + 4));
                string? value = CString(cache, start + U32(cache, e + 8));
                if (key == soname && value != null)
                    yield return value;
            }
        }

        static ushort? MachineOf(string path)
        {
            try
            {
                using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
                {
                    var h = new byte[20];
                    if (fs.Read(h, 0, h.Length) != h.Length || h[0] != 0x7f || h[1] != (byte)'E' || h[4] != 2 || h[5] != 1)
                        return null;
                    return (ushort)(h[0x12] | h[0x13] << 8);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return null;
            }
        }

        static uint U32(byte[] b, long o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);

        static string? CString(byte[] b, long offset)
        {
            if (offset < 0 || offset >= b.Length)
                return null;
            int end = Array.IndexOf(b, (byte)0, (int)offset);
            return end < 0 ? null : Encoding.UTF8.GetString(b, (int)offset, end - (int)offset);
        }

        static int IndexOf(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= haystack.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && haystack[i + j] == needle[j])
                    j++;
                if (j == needle.Length)
                    return i;
            }
            return -1;
        }

        /// <summary>
        /// The marker's JSON. It holds no build time (the stamp carries the library's own, preserved, timestamp), so an
        /// unchanged state is never rewritten.
        /// </summary>
        public static string MarkerJson(LibStdCxxCompatPlan plan, string libraryFileName, string? stamp = null)
        {
            string status = plan.Status == LibStdCxxCompatStatus.NotNeeded ? "not-needed"
                : plan.Status == LibStdCxxCompatStatus.Applied ? "applied"
                : "refused";
            var weakened = plan.Status == LibStdCxxCompatStatus.Applied ? plan.Missing : new List<ElfVersionRequirement>();
            var sb = new StringBuilder();
            sb.Append("{\n");
            sb.Append("  \"schema\": 1,\n");
            sb.Append("  \"status\": ").Append(JsonString(status)).Append(",\n");
            sb.Append("  \"library\": ").Append(JsonString(libraryFileName)).Append(",\n");
            sb.Append("  \"hostLibStdCxx\": ").Append(JsonString(plan.HostLibStdCxx)).Append(",\n");
            sb.Append("  \"weakened\": ").Append(JsonArray(weakened.Select(v => v.Name))).Append(",\n");
            sb.Append("  \"refused\": ").Append(JsonArray(plan.Refused.Select(v => v.Name))).Append(",\n");
            sb.Append("  \"symbols\": ").Append(JsonArray(weakened.Concat(plan.Refused).SelectMany(v => v.Symbols).Distinct()));
            if (stamp != null)
                sb.Append(",\n  \"stamp\": ").Append(JsonString(stamp));
            sb.Append('\n');
            sb.Append("}\n");
            return sb.ToString();
        }

        static string JsonArray(IEnumerable<string> items) => "[" + string.Join(", ", items.Select(JsonString)) + "]";

        static string JsonString(string s)
        {
            var sb = new StringBuilder("\"");
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20)
                            sb.Append("\\u").Append(((int)c).ToString("x4"));
                        else
                            sb.Append(c);
                        break;
                }
            }
            return sb.Append('"').ToString();
        }

        // Writing a new inode and renaming it over the old one never modifies a file the output shares with the
        // NuGet cache through a hard link, and readers never see a half-written library.
        static void ReplaceAtomically(string path, byte[] content, bool keepTimestamps)
        {
            string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
            string temp = Path.Combine(dir, "." + Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp");
            bool exists = System.IO.File.Exists(path);
            DateTime lastWrite = exists ? System.IO.File.GetLastWriteTimeUtc(path) : default(DateTime);
            try
            {
                using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                {
                    fs.Write(content, 0, content.Length);
                    fs.Flush(true);
                }
                if (exists)
                {
                    CopyUnixFileMode(path, temp);
                    if (keepTimestamps)
                        System.IO.File.SetLastWriteTimeUtc(temp, lastWrite);
                    System.IO.File.Replace(temp, path, null);
                }
                else
                {
                    System.IO.File.Move(temp, path);
                }
            }
            finally
            {
                if (System.IO.File.Exists(temp))
                    System.IO.File.Delete(temp);
            }
        }

        // File.{Get,Set}UnixFileMode exist from .NET 7 on, but not in the netstandard surface this file compiles against.
        static void CopyUnixFileMode(string from, string to)
        {
            var get = typeof(System.IO.File).GetMethod("GetUnixFileMode", new[] { typeof(string) });
            if (get == null)
                return;
            var set = typeof(System.IO.File).GetMethod("SetUnixFileMode", new[] { typeof(string), get.ReturnType });
            if (set == null)
                return;
            var mode = get.Invoke(null, new object[] { from });
            set.Invoke(null, new[] { to, mode });
        }
    }

#if !TASKVECTORS_NO_MSBUILD
    /// <summary>
    /// MSBuild task: for each existing libLibTorchSharp.so in <see cref="Libraries"/>, weakens the libstdc++ versions
    /// the build host lacks when only allow-listed symbols use them. Warnings, never errors: an unpatched library
    /// is still a valid build output.
    /// </summary>
    public sealed class PatchLibTorchSharpForHostLibStdCxx : Microsoft.Build.Utilities.Task
    {
        /// <summary>Candidate library paths; missing files are ignored.</summary>
        [Required]
        public ITaskItem[] Libraries { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>Semicolon-separated symbols whose version may be weakened.</summary>
        public string AllowedSymbols { get; set; } = LibStdCxxCompat.DefaultAllowedSymbols;

        /// <summary>Overrides the host libstdc++ lookup (e.g. the target image's copy when building in a container).</summary>
        public string HostLibStdCxx { get; set; } = "";

        /// <summary>Recorded in the marker (see <see cref="LibStdCxxCompat.PatchFile"/>) so later builds can skip the check.</summary>
        public string StampPrefix { get; set; } = "";

        /// <summary>Libraries rewritten by this invocation.</summary>
        [Output]
        public ITaskItem[] PatchedLibraries { get; set; } = Array.Empty<ITaskItem>();

        /// <inheritdoc/>
        public override bool Execute()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
                return true;

            var allowed = (AllowedSymbols ?? "").Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries);
            var patched = new List<ITaskItem>();
            var paths = Libraries.Select(i => Path.GetFullPath(i.ItemSpec)).Distinct(StringComparer.Ordinal);
            foreach (var path in paths.Where(System.IO.File.Exists))
            {
                try
                {
                    var library = ElfSymbolVersions.ReadFile(path);
                    string? host = string.IsNullOrWhiteSpace(HostLibStdCxx) ? LibStdCxxCompat.FindHostLibStdCxx(library.Machine) : HostLibStdCxx;
                    if (host == null)
                    {
                        Log.LogMessage(MessageImportance.Normal,
                            "TaskVectors: no host libstdc++.so.6 for ELF machine {0}; leaving {1} unchanged.", library.Machine, path);
                        continue;
                    }

                    var result = LibStdCxxCompat.PatchFile(path, host, allowed, string.IsNullOrEmpty(StampPrefix) ? null : StampPrefix);
                    var plan = result.Plan;
                    string names = string.Join(", ", plan.Missing.Select(v => v.Name));
                    switch (plan.Status)
                    {
                        case LibStdCxxCompatStatus.Applied when result.LibraryRewritten:
                            patched.Add(new Microsoft.Build.Utilities.TaskItem(path));
                            Log.LogMessage(MessageImportance.High,
                                "TaskVectors: weakened {0} in {1}: the host libstdc++ ({2}) lacks it and only {3} uses it (see docs/linux-compatibility.md).",
                                names, path, host, string.Join(", ", plan.Missing.SelectMany(v => v.Symbols).Distinct()));
                            break;
                        case LibStdCxxCompatStatus.Applied:
                            Log.LogMessage(MessageImportance.Low, "TaskVectors: {0} already weakened in {1}.", names, path);
                            break;
                        case LibStdCxxCompatStatus.NotNeeded:
                            Log.LogMessage(MessageImportance.Low, "TaskVectors: {0} needs no libstdc++ compatibility step ({1}).", path, host);
                            break;
                        default:
                            Log.LogWarning(null, "TVCOMPAT001", null, path, 0, 0, 0, 0,
                                "TaskVectors: {0} requires {1} from libstdc++, which {2} does not define; not weakening because {3} binds symbols outside TaskVectorsLibStdCxxWeakenAllowList: {4}. TorchSharp will probably fail to load; see docs/linux-compatibility.md.",
                                Path.GetFileName(path), names, host,
                                string.Join(", ", plan.Refused.Select(v => v.Name)),
                                string.Join(", ", plan.Refused.SelectMany(v => v.Symbols).Where(s => !allowed.Contains(s)).Distinct()));
                            break;
                    }
                }
                catch (Exception e) when (e is ElfFormatException || e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogWarning(null, "TVCOMPAT002", null, path, 0, 0, 0, 0,
                        "TaskVectors: libstdc++ compatibility step skipped for {0}: {1}", path, e.Message);
                }
            }
            PatchedLibraries = patched.ToArray();
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
