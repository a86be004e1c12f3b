//! Reading an [`Item`] without buffering it first.
//!
//! An [`Item`] on the wire is a JSON object whose `kind` says which record it is
//! (`{"kind":"step_start",…}`). serde's derive for such an internally tagged enum cannot know
//! where `kind` is, so it first copies the whole object (every environment variable, every task)
//! into a private tree of its own, finds `kind` there, then reads the record again from the tree.
//! `collector serve` did that for every batch twice (the connection thread checks it, the writer
//! merges it), and `perf` put close to half of a connection thread's time in it
//! (`bench/collector-ingest`).
//!
//! Every writer of items puts `kind` first: they all serialize with serde, whose internally
//! tagged serializer writes the tag before the fields. So when the first key is `kind`, the
//! record is read straight from the rest of the object. An object with `kind` elsewhere (written
//! by hand, say) is still read, through a [`serde_json::Value`], with the same result.

use crate::{Item, JobEnd, StepEnd, StepStart};
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The `kind` of each variant, as `rename_all = "snake_case"` names them when serializing.
const KINDS: &[&str] = &["step_start", "step_end", "job_end"];

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record item: an object with a \"kind\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field("kind"));
        };
        if first == "kind" {
            let kind: String = map.next_value()?;
            return variant(&kind, MapAccessDeserializer::new(map));
        }
        // `kind` is not first: gather the object, then read it as above.
        let mut object = serde_json::Map::new();
        object.insert(first, map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            object.insert(key, value);
        }
        let kind = match object.remove("kind") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(other) => return Err(de::Error::invalid_type(unexpected(&other), &"a string")),
            None => return Err(de::Error::missing_field("kind")),
        };
        variant(&kind, serde_json::Value::Object(object)).map_err(de::Error::custom)
    }
}

/// The record `kind` names, read from what follows the tag.
fn variant<'de, D: Deserializer<'de>>(kind: &str, rest: D) -> Result<Item, D::Error> {
    match kind {
        "step_start" => StepStart::deserialize(rest).map(Item::StepStart),
        "step_end" => StepEnd::deserialize(rest).map(Item::StepEnd),
        "job_end" => JobEnd::deserialize(rest).map(Item::JobEnd),
        other => Err(de::Error::unknown_variant(other, KINDS)),
    }
}

fn unexpected(v: &serde_json::Value) -> de::Unexpected<'_> {
    match v {
        serde_json::Value::Null => de::Unexpected::Unit,
        serde_json::Value::Bool(b) => de::Unexpected::Bool(*b),
        serde_json::Value::Number(_) => de::Unexpected::Other("a number"),
        serde_json::Value::String(s) => de::Unexpected::Str(s),
        serde_json::Value::Array(_) => de::Unexpected::Seq,
        serde_json::Value::Object(_) => de::Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use crate::{ExitStatus, Fact, Item, JobEnd, JobState, Module, StepEnd, StepStart, TaskExit};

    /// One item of each kind, with the maps, lists and options the plugin and the epilog fill.
    fn items() -> Vec<Item> {
        let env = [("PATH", "/usr/bin"), ("OMP_NUM_THREADS", "4"), ("SLURM_JOB_ID", "77")];
        let start = StepStart {
            cluster: "c1".into(),
            job_id: 77,
            step_id: 0,
            node: "n1".into(),
            array_job_id: Some(70),
            user: "alice".into(),
            argv: vec!["lmp".into(), "-in".into(), "in.lj".into()],
            exe: Some("/usr/bin/lmp".into()),
            account: Some("physics".into()),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            modules: vec![Module { name: "lammps".into(), version: Some("2023".into()), file: None }],
            tags: [("case".to_string(), "lj".to_string())].into(),
            start: 100,
            alloc_mem_mb: Some(4096),
            ..Default::default()
        };
        let end = StepEnd {
            cluster: "c1".into(),
            job_id: 77,
            step_id: 0,
            node: "n1".into(),
            start: 100,
            end: 160,
            tasks: vec![TaskExit::from_wait(0, 0, 0, 159), TaskExit::from_wait(1, 1, 11, 160)],
            cpu_user_s: 57.25,
            cpu_sys_s: 1.5,
            max_rss_kib: 81_920,
            stdout: Some("/home/alice/slurm-77.out".into()),
            ..Default::default()
        };
        let job_end = JobEnd {
            cluster: "c1".into(),
            job_id: 77,
            node: "n1".into(),
            uid: 1000,
            user: "alice".into(),
            exit: ExitStatus { code: 0, signal: 11, core_dumped: false },
            state: JobState::Failed,
            end: 161,
            facts: vec![Fact { source: "lammps".into(), key: "atoms".into(), value: "32000".into(), unit: None }],
            ..Default::default()
        };
        vec![Item::StepStart(start), Item::StepEnd(end), Item::JobEnd(job_end)]
    }

    #[test]
    fn every_kind_round_trips_with_kind_first() {
        for item in items() {
            let json = serde_json::to_string(&item).unwrap();
            assert!(json.starts_with(r#"{"kind":""#), "{json}");
            assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
        }
    }

    #[test]
    fn kind_anywhere_reads_the_same() {
        for item in items() {
            let serde_json::Value::Object(mut fields) = serde_json::to_value(&item).unwrap() else {
                panic!("an item is an object")
            };
            let kind = fields.remove("kind").unwrap();
            fields.insert("kind".into(), kind); // a sorted map: after "account", "cluster" …
            let json = serde_json::to_string(&fields).unwrap();
            assert!(!json.starts_with(r#"{"kind""#), "{json}");
            assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
        }
    }

    #[test]
    fn a_missing_or_unknown_kind_is_a_clear_error() {
        let e = serde_json::from_str::<Item>(r#"{"kind":"step_middle","job_id":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `step_middle`, expected one of"), "{e}");
        let e = serde_json::from_str::<Item>(r#"{"job_id":1,"kind":"step_middle"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `step_middle`"), "{e}");
        let e = serde_json::from_str::<Item>(r#"{"job_id":1}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `kind`"), "{e}");
        let e = serde_json::from_str::<Item>("{}").unwrap_err();
        assert!(e.to_string().contains("missing field `kind`"), "{e}");
        let e = serde_json::from_str::<Item>(r#"{"job_id":1,"kind":7}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = serde_json::from_str::<Item>(r#"["step_start"]"#).unwrap_err();
        assert!(e.to_string().contains("an object with a \"kind\""), "{e}");
    }

    #[test]
    fn a_bad_field_after_kind_names_the_field() {
        let e = serde_json::from_str::<Item>(r#"{"kind":"job_end","job_id":"seven"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type: string \"seven\""), "{e}");
    }
}
