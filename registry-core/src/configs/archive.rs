//! Export and import of a namespace's configs as a zip in Nacos' v2 export format: one entry
//! `group/dataId` per config holding its content, plus `.metadata.yml` listing each config's
//! `dataId`, `group`, `type`, `appName` and `desc`. Imports also accept Nacos' v1 format, whose
//! `.meta.yml` holds `group.dataId.app=appName` lines. Pure functions over bytes.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};

use zip::ZipArchive;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::model::{ConfigItem, ConfigKey};

/// Name of the v2 metadata entry.
pub const METADATA_V2: &str = ".metadata.yml";
/// Name of the v1 metadata entry.
pub const METADATA_V1: &str = ".meta.yml";
/// Largest archive entry read on import (bytes): bounds memory on hostile input.
const MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;
/// Most bytes read from all entries of one import together: deflate packs about 1000:1, so a zip
/// within the request-body limit could otherwise unpack to gigabytes, entry by entry.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// Why an archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bytes are not a readable zip.
    #[error("not a valid zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading or writing an entry failed.
    #[error("archive entry could not be read or written: {0}")]
    Io(#[from] std::io::Error),
    /// An entry is too large.
    #[error("archive entry {0} is larger than allowed")]
    TooLarge(String),
    /// The entries together unpack to more than allowed.
    #[error("archive unpacks to more than {} MiB", MAX_TOTAL_BYTES / (1024 * 1024))]
    TooLargeInTotal,
}

/// One config found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedConfig {
    /// Group.
    pub group: String,
    /// Data id.
    pub data_id: String,
    /// Content.
    pub content: String,
    /// Type (`text` when unknown).
    pub config_type: String,
    /// App name.
    pub app_name: String,
    /// Description.
    pub desc: String,
}

/// YAML single-quoted scalar.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes the export zip of `configs`.
pub fn export(configs: &[(ConfigKey, std::sync::Arc<ConfigItem>)]) -> Result<Vec<u8>, ArchiveError> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    let mut metadata = String::from("metadata:\n");
    for (key, item) in configs {
        zip.start_file(format!("{}/{}", key.group, key.data_id), options)?;
        zip.write_all(item.content.as_bytes())?;
        metadata.push_str(&format!(
            "- dataId: {}\n  group: {}\n  type: {}\n  appName: {}\n  desc: {}\n",
            quote(&key.data_id),
            quote(&key.group),
            quote(&item.meta.config_type),
            quote(&item.meta.app_name),
            quote(&item.meta.desc),
        ));
    }
    zip.start_file(METADATA_V2, options)?;
    zip.write_all(metadata.as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

/// Unquotes a YAML scalar written by us or by Nacos (plain, single- or double-quoted).
fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].replace("\\\"", "\"")
    } else {
        v.to_owned()
    }
}

/// Parses `.metadata.yml`: a `metadata:` list of maps with scalar values.
fn parse_metadata_v2(text: &str) -> Vec<HashMap<String, String>> {
    let mut out: Vec<HashMap<String, String>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let (starts_item, rest) = match trimmed.strip_prefix("- ") {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        if starts_item {
            out.push(HashMap::new());
        }
        if let (Some(current), Some((k, v))) = (out.last_mut(), rest.split_once(':'))
            && !k.trim().is_empty()
            && k.trim() != "metadata"
        {
            current.insert(k.trim().to_owned(), unquote(v));
        }
    }
    out
}

/// Reads an import zip. Entries outside `group/dataId` form and metadata files are ignored.
pub fn import(bytes: &[u8]) -> Result<Vec<ImportedConfig>, ArchiveError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))?;
    let mut contents: Vec<(String, String, String)> = Vec::new();
    let mut meta_v2: Option<String> = None;
    let mut meta_v1: Option<String> = None;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name()?.into_owned();
        if entry.size() > MAX_ENTRY_BYTES {
            return Err(ArchiveError::TooLarge(name));
        }
        // The sizes in the headers are the sender's word: read one byte past each limit to see
        // whether the real content keeps going.
        let allowed = MAX_ENTRY_BYTES.min(MAX_TOTAL_BYTES - total);
        let mut text = String::new();
        entry.by_ref().take(allowed + 1).read_to_string(&mut text)?;
        let read = text.len() as u64;
        if read > allowed {
            return Err(if read > MAX_ENTRY_BYTES {
                ArchiveError::TooLarge(name)
            } else {
                ArchiveError::TooLargeInTotal
            });
        }
        total += read;
        match name.as_str() {
            METADATA_V2 => meta_v2 = Some(text),
            METADATA_V1 => meta_v1 = Some(text),
            _ => {
                if let Some((group, data_id)) = name.split_once('/')
                    && !group.is_empty()
                    && !data_id.is_empty()
                    && !data_id.contains('/')
                {
                    contents.push((group.to_owned(), data_id.to_owned(), text));
                }
            }
        }
    }
    let v2: HashMap<(String, String), HashMap<String, String>> = meta_v2
        .as_deref()
        .map(parse_metadata_v2)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some(((m.get("group")?.clone(), m.get("dataId")?.clone()), m)))
        .collect();
    let v1_apps: HashMap<String, String> = meta_v1
        .as_deref()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(contents
        .into_iter()
        .map(|(group, data_id, content)| {
            let m = v2.get(&(group.clone(), data_id.clone()));
            let field = |k: &str| m.and_then(|m| m.get(k)).cloned().unwrap_or_default();
            let app_name = match m {
                Some(_) => field("appName"),
                None => v1_apps.get(&format!("{group}.{data_id}.app")).cloned().unwrap_or_default(),
            };
            let config_type = Some(field("type")).filter(|t| !t.is_empty()).unwrap_or_else(|| "text".into());
            ImportedConfig { group, data_id, content, config_type, app_name, desc: field("desc") }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::config::md5_hex;
    use crate::model::{ConfigMeta, Source};

    fn item(content: &str, t: &str, app: &str) -> Arc<ConfigItem> {
        Arc::new(ConfigItem {
            id: 1,
            content: content.into(),
            md5: md5_hex(content),
            meta: ConfigMeta {
                config_type: t.into(),
                app_name: app.into(),
                desc: "it's".into(),
                ..ConfigMeta::default()
            },
            create_time: 0,
            modify_time: 0,
            source: Source::default(),
            gray: vec![],
        })
    }

    #[test]
    fn export_then_import_round_trips_content_and_metadata() {
        let configs = vec![
            (ConfigKey::new("dev", "G1", "a.yaml").unwrap(), item("a: 1\n", "yaml", "shop")),
            (ConfigKey::new("dev", "G2", "b.json").unwrap(), item("{}", "json", "")),
        ];
        let zip = export(&configs).unwrap();
        let mut back = import(&zip).unwrap();
        back.sort_by(|a, b| a.data_id.cmp(&b.data_id));
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].group.as_str(), back[0].content.as_str(), back[0].config_type.as_str()),
            ("G1", "a: 1\n", "yaml")
        );
        assert_eq!((back[0].app_name.as_str(), back[0].desc.as_str()), ("shop", "it's"));
        assert_eq!(back[1].config_type, "json");
    }

    #[test]
    fn v1_archives_with_meta_yml_are_read() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let o = SimpleFileOptions::default();
        zip.start_file("G/x.properties", o).unwrap();
        zip.write_all(b"k=v").unwrap();
        zip.start_file(METADATA_V1, o).unwrap();
        zip.write_all(b"G.x.properties.app=billing\n").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let got = import(&bytes).unwrap();
        assert_eq!(got[0].app_name, "billing");
        assert_eq!(got[0].config_type, "text");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(import(b"not a zip").is_err());
    }

    /// A zip of highly compressible entries: small on the wire, `entries` × `each` bytes unpacked.
    fn bomb(entries: usize, each: usize) -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let chunk = vec![b'a'; each];
        for i in 0..entries {
            zip.start_file(format!("DEFAULT_GROUP/bomb-{i}"), SimpleFileOptions::default()).unwrap();
            zip.write_all(&chunk).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn archives_unpacking_past_the_total_limit_are_refused() {
        // 8 entries of 9 MiB: each under the entry limit, 72 MiB together.
        let bytes = bomb(8, 9 * 1024 * 1024);
        assert!(bytes.len() < 1024 * 1024, "the test archive is a bomb: {} bytes", bytes.len());
        assert!(matches!(import(&bytes), Err(ArchiveError::TooLargeInTotal)));
        // The same entries up to the limit are read.
        assert_eq!(import(&bomb(7, 9 * 1024 * 1024)).map(|c| c.len()).ok(), Some(7));
    }

    #[test]
    fn an_entry_past_its_limit_is_refused_not_cut() {
        let bytes = bomb(1, 16 * 1024 * 1024 + 1);
        assert!(matches!(import(&bytes), Err(ArchiveError::TooLarge(name)) if name == "DEFAULT_GROUP/bomb-0"));
    }
}
