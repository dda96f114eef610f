//! What a file really is: its type from magic bytes (or UTF-8 text), checked against the
//! allowlist and against the extension its name claims.

use crate::text::{Arg, t_with};
use crate::types::FileName;

pub const TEXT_PLAIN: &str = "text/plain";
pub const UNKNOWN: &str = "application/octet-stream";

/// Extensions a name may carry for each type Coffer recognises.
const EXTENSIONS: &[(&str, &[&str])] = &[
    ("application/pdf", &["pdf"]),
    (
        TEXT_PLAIN,
        &[
            "txt", "text", "csv", "tsv", "md", "log", "json", "ndjson", "yaml", "yml", "ini",
            "cfg", "conf", "eml", "vcf", "ics", "srt", "vtt", "hl7", "edi", "xml",
        ],
    ),
    ("text/xml", &["xml", "xsd", "xsl", "svg", "plist"]),
    ("text/html", &["html", "htm"]),
    ("application/rtf", &["rtf"]),
    ("application/msword", &["doc", "dot"]),
    ("application/vnd.ms-excel", &["xls", "xlt"]),
    ("application/vnd.ms-powerpoint", &["ppt", "pps", "pot"]),
    (
        "application/x-ole-storage",
        &["doc", "xls", "ppt", "msg", "msi"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &["docx", "dotx"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &["xlsx", "xltx"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        &["pptx", "ppsx"],
    ),
    (MACRO_TYPES[0].1, &["docm", "dotm"]),
    (MACRO_TYPES[1].1, &["xlsm", "xltm"]),
    (MACRO_TYPES[2].1, &["pptm", "ppsm", "potm"]),
    ("application/vnd.oasis.opendocument.text", &["odt"]),
    ("application/vnd.oasis.opendocument.spreadsheet", &["ods"]),
    ("application/vnd.oasis.opendocument.presentation", &["odp"]),
    ("application/epub+zip", &["epub"]),
    ("image/png", &["png"]),
    ("image/jpeg", &["jpg", "jpeg", "jpe", "jfif"]),
    ("image/gif", &["gif"]),
    ("image/webp", &["webp"]),
    ("image/tiff", &["tif", "tiff"]),
    ("image/bmp", &["bmp", "dib"]),
    ("image/heif", &["heif", "heic"]),
    ("image/avif", &["avif"]),
    ("application/dicom", &["dcm", "dicom"]),
    ("application/zip", &["zip"]),
    ("application/gzip", &["gz", "tgz"]),
    ("application/x-tar", &["tar"]),
    ("application/x-7z-compressed", &["7z"]),
    ("application/vnd.rar", &["rar"]),
    ("application/x-xz", &["xz", "txz"]),
    ("application/x-bzip2", &["bz2", "tbz2"]),
    ("application/zstd", &["zst"]),
    ("audio/mpeg", &["mp3"]),
    ("audio/x-wav", &["wav"]),
    ("audio/ogg", &["ogg", "oga"]),
    ("audio/x-flac", &["flac"]),
    ("audio/m4a", &["m4a"]),
    ("video/mp4", &["mp4", "m4v"]),
    ("video/quicktime", &["mov", "qt"]),
    ("video/webm", &["webm"]),
    ("video/x-matroska", &["mkv", "mka"]),
    ("video/x-msvideo", &["avi"]),
];

/// Office Open XML types and their macro-enabled twins: the same ZIP container, told apart by
/// the macro part (`vbaProject.bin`) inside it, never by the name. The macro-enabled types are
/// not on the default allowlist.
const MACRO_TYPES: [(&str, &str); 3] = [
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-word.document.macroEnabled.12",
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-excel.sheet.macroEnabled.12",
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    ),
];

/// Finds the name of an Office macro part (`…/vbaProject.bin`) anywhere in a stream: ZIP
/// stores each entry's name uncompressed in its local header and in the central directory,
/// wherever in the archive the part lies.
#[derive(Debug, Default)]
pub struct MacroProbe {
    tail: Vec<u8>,
    found: bool,
}

impl MacroProbe {
    const NEEDLE: &[u8] = b"vbaProject.bin";

    pub fn update(&mut self, data: &[u8]) {
        if self.found {
            return;
        }
        let keep = Self::NEEDLE.len() - 1;
        // The seam: the last bytes before this piece and its first ones.
        let mut seam = std::mem::take(&mut self.tail);
        seam.extend_from_slice(&data[..data.len().min(keep)]);
        self.found = memchr::memmem::find(&seam, Self::NEEDLE).is_some()
            || memchr::memmem::find(data, Self::NEEDLE).is_some();
        // The last `keep` bytes seen so far.
        self.tail = if data.len() >= keep {
            data[data.len() - keep..].to_vec()
        } else {
            seam[seam.len().saturating_sub(keep)..].to_vec()
        };
    }

    pub fn found(&self) -> bool {
        self.found
    }
}

/// Finds UTF-8 text across chunk boundaries: valid UTF-8 with no NUL byte.
#[derive(Debug, Default)]
pub struct TextProbe {
    carry: Vec<u8>,
    not_text: bool,
}

impl TextProbe {
    pub fn update(&mut self, data: &[u8]) {
        if self.not_text {
            return;
        }
        let joined;
        let bytes = if self.carry.is_empty() {
            data
        } else {
            joined = [self.carry.as_slice(), data].concat();
            &joined
        };
        if bytes.contains(&0) {
            self.not_text = true;
            return;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => self.carry.clear(),
            Err(err) if err.error_len().is_none() => {
                self.carry = bytes[err.valid_up_to()..].to_vec(); // split multi-byte character
            }
            Err(_) => self.not_text = true,
        }
    }

    pub fn is_text(&self) -> bool {
        !self.not_text && self.carry.is_empty()
    }
}

/// The type of a file from its first bytes, falling back to text when the whole is UTF-8; an
/// Office document with a macro part is its macro-enabled type.
pub fn sniff(head: &[u8], whole_is_text: bool, has_macros: bool) -> (String, bool) {
    match infer::get(head) {
        Some(kind) => {
            let mime = kind.mime_type();
            let mime = match MACRO_TYPES.iter().find(|(plain, _)| *plain == mime) {
                Some((_, macro_enabled)) if has_macros => macro_enabled,
                _ => mime,
            };
            (
                mime.to_owned(),
                kind.matcher_type() == infer::MatcherType::App,
            )
        }
        None if whole_is_text => (TEXT_PLAIN.to_owned(), false),
        None => (UNKNOWN.to_owned(), false),
    }
}

/// Why a file of type `mime` named `name` is refused, in words for its owner; `None` if fine.
pub fn reject_reason(
    name: &FileName,
    mime: &str,
    executable: bool,
    allowed: &[String],
) -> Option<String> {
    if executable {
        return Some(t_with(
            "file-rejected-executable",
            [("type", Arg::from(mime))],
        ));
    }
    if !allowed.iter().any(|a| a == mime) {
        return Some(t_with("file-rejected-type", [("type", Arg::from(mime))]));
    }
    let ext = name.extension()?;
    let fits = EXTENSIONS
        .iter()
        .filter(|(m, _)| *m == mime)
        .any(|(_, exts)| exts.contains(&ext.as_str()));
    if fits {
        None
    } else {
        Some(t_with(
            "file-rejected-extension",
            [("extension", Arg::from(ext)), ("type", Arg::from(mime))],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<String> {
        crate::config::DEFAULT_ALLOWED_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn name(n: &str) -> FileName {
        FileName::parse(n).expect("valid name")
    }

    #[test]
    fn text_probe_handles_split_characters_and_binary() {
        let mut probe = TextProbe::default();
        let text = "Grüße, 世界".as_bytes();
        probe.update(&text[..3]);
        probe.update(&text[3..]);
        assert!(probe.is_text());
        let mut probe = TextProbe::default();
        probe.update(b"abc\0def");
        assert!(!probe.is_text());
        let mut probe = TextProbe::default();
        probe.update(&[0xE4, 0xB8]); // truncated character at the very end
        assert!(!probe.is_text());
    }

    #[test]
    fn spoofed_executable_is_rejected() {
        let (mime, exe) = sniff(
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff",
            false,
            false,
        );
        assert!(exe, "{mime}");
        let reason = reject_reason(&name("invoice.pdf"), &mime, exe, &all()).expect("rejected");
        assert!(reason.contains("executable"), "{reason}");
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        elf.resize(128, 0);
        let (mime, exe) = sniff(&elf, false, false);
        assert!(exe && reject_reason(&name("x.txt"), &mime, exe, &all()).is_some());
    }

    #[test]
    fn extension_must_match_content() {
        let (mime, exe) = sniff(b"%PDF-1.7\n", false, false);
        assert_eq!(mime, "application/pdf");
        assert_eq!(reject_reason(&name("a.PDF"), &mime, exe, &all()), None);
        assert_eq!(
            reject_reason(&name("no-extension"), &mime, exe, &all()),
            None
        );
        assert!(reject_reason(&name("a.png"), &mime, exe, &all()).is_some());
        let (text, _) = sniff(b"hello", true, false);
        assert_eq!(
            reject_reason(&name("notes.csv"), &text, false, &all()),
            None
        );
        assert!(reject_reason(&name("notes.pdf"), &text, false, &all()).is_some());
    }

    #[test]
    fn a_name_with_only_a_suffix_is_checked_by_it() {
        let (text, _) = sniff(b"CreateObject(\"WScript.Shell\").Run \"calc\"", true, false);
        let reason = reject_reason(&name(".hta"), &text, false, &all()).expect("rejected");
        assert!(reason.contains(".hta"), "{reason}");
    }

    #[test]
    fn the_macro_part_is_found_wherever_the_stream_splits_it() {
        let mut stream = vec![b'x'; 200];
        stream.extend_from_slice(b"word/vbaProject.bin");
        stream.extend_from_slice(&[b'y'; 100]);
        for step in [1, 3, 7, 13, 14, 64, 1000] {
            let mut probe = MacroProbe::default();
            for piece in stream.chunks(step) {
                probe.update(piece);
            }
            assert!(probe.found(), "pieces of {step}");
        }
        let mut clean = MacroProbe::default();
        for piece in b"word/document.xml vbaProject.bi n".chunks(5) {
            clean.update(piece);
        }
        assert!(!clean.found());
    }

    #[test]
    fn allowlist_is_enforced() {
        let (mime, exe) = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false, false);
        assert_eq!(mime, "image/png");
        assert!(
            reject_reason(&name("a.png"), &mime, exe, &["application/pdf".to_owned()]).is_some()
        );
        assert_eq!(sniff(&[0xff, 0x00, 0x13], false, false).0, UNKNOWN);
        assert!(reject_reason(&name("blob"), UNKNOWN, false, &all()).is_some());
    }
}
