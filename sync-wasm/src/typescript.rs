//! TypeScript declarations for the plain objects crossing the JS boundary
//! (the `GraspSync` class itself is declared by wasm-bindgen).
//!
//! `js/types.d.ts` is generated from the Rust types that serde reads the
//! config from and writes the status with (`config::JsConfig` here, the
//! `sync_core::status` types with sync-core's `typescript` feature) by ts-rs,
//! so the declarations cannot drift from them: the host test below fails when
//! the committed file differs from what the types give, and
//! `UPDATE_TYPES=1 cargo test -p sync-wasm typescript` rewrites it. The same
//! file is the custom section of wasm-bindgen's `sync_wasm.d.ts`.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen::prelude::*;

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = include_str!("../js/types.d.ts");

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::any::TypeId;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use sync_core::status::{HistoricProgress, RelayCounters, RelayError, RepoStatus, Totals};
    use sync_core::{ConnectionStatus, HealthStatus, RelayStatus, SyncStatus};
    use ts_rs::{Config, TS};

    use crate::config::{JsConfig, JsInterest, JsServer, JsTimings};

    /// How to bring the committed file up to date.
    const REGENERATE: &str = "UPDATE_TYPES=1 cargo test -p sync-wasm typescript";

    const BANNER: &str = "\
// TypeScript declarations of the objects `GraspSync` takes and returns.
// GENERATED from the Rust types by sync-wasm/src/typescript.rs (ts-rs): do not
// edit; change the Rust types and their doc comments, then run
//   UPDATE_TYPES=1 cargo test -p sync-wasm typescript
// `cargo test` fails while this file differs from what the types give.
";

    /// NIP-01 shapes: nostr's, not Rust types of ours; included verbatim.
    const NOSTR_TYPES: &str = r#"// ---- NIP-01 (hand-written in sync-wasm/src/typescript.rs) ----

/** A NIP-01 filter, as `query()` and `count()` take it. */
export interface NostrFilter {
    ids?: string[];
    authors?: string[];
    kinds?: number[];
    since?: number;
    until?: number;
    limit?: number;
    /** Tag filters: `#e`, `#p`, `#a`, … */
    [tag: `#${string}`]: string[] | undefined;
}

/** A NIP-01 event, as `query()` returns it. */
export interface NostrEvent {
    id: string;
    pubkey: string;
    created_at: number;
    kind: number;
    tags: string[][];
    content: string;
    sig: string;
}
"#;

    /// Four spaces, as wasm-bindgen indents its `sync_wasm.d.ts` (it re-indents
    /// the custom section too), so that file holds this one byte for byte.
    const INDENT: &str = "    ";

    /// One exported declaration.
    struct Decl {
        id: TypeId,
        name: String,
        text: String,
        /// Exported types it refers to, which must be declared too.
        deps: Vec<(TypeId, String)>,
    }

    fn decl<T: TS + 'static>(cfg: &Config) -> Decl {
        let mut text = String::new();
        if let Some(docs) = T::docs() {
            text.push_str(&format_comment(&docs, ""));
        }
        text.push_str(&format_decl(&T::decl(cfg)));
        Decl {
            id: TypeId::of::<T>(),
            name: T::ident(cfg),
            text,
            deps: T::dependencies(cfg).into_iter().map(|d| (d.type_id, d.ts_name)).collect(),
        }
    }

    /// The whole of `js/types.d.ts`, from the Rust types.
    fn generate() -> String {
        // serde_wasm_bindgen's json_compatible serializer (and serde_json for
        // the daemon's /status) writes u64 as a plain number.
        let cfg = Config::new().with_large_int("number");
        let config = [decl::<JsConfig>(&cfg), decl::<JsInterest>(&cfg), decl::<JsServer>(&cfg), decl::<JsTimings>(&cfg)];
        let status = [
            decl::<SyncStatus>(&cfg),
            decl::<RelayStatus>(&cfg),
            decl::<ConnectionStatus>(&cfg),
            decl::<HealthStatus>(&cfg),
            decl::<RelayError>(&cfg),
            decl::<HistoricProgress>(&cfg),
            decl::<RelayCounters>(&cfg),
            decl::<Totals>(&cfg),
            decl::<RepoStatus>(&cfg),
        ];
        let all: Vec<&Decl> = config.iter().chain(&status).collect();
        for d in &all {
            for (id, name) in &d.deps {
                assert!(
                    all.iter().any(|o| o.id == *id),
                    "{} refers to {name}, which js/types.d.ts does not declare: add it to generate() in {}",
                    d.name,
                    file!()
                );
            }
        }
        let section = |title: &str, decls: &[Decl]| {
            let body: Vec<&str> = decls.iter().map(|d| d.text.as_str()).collect();
            format!("// ---- {title} ----\n\n{}", body.join("\n"))
        };
        [
            BANNER.to_owned(),
            section("Configuration: `new GraspSync(config)` (sync-wasm/src/config.rs)", &config),
            section("Status: `status()`, `onStatus(callback)`, the daemon's GET /status (sync-core/src/status.rs)", &status),
            NOSTR_TYPES.to_owned(),
        ]
        .join("\n")
    }

    /// Re-indents a ts-rs JSDoc comment (`/**\n * line\n */\n`); one-line
    /// comments become `/** line */`.
    fn format_comment(docs: &str, indent: &str) -> String {
        let lines: Vec<&str> = docs
            .trim()
            .trim_start_matches("/**")
            .trim_end_matches("*/")
            .lines()
            .map(|l| {
                let l = l.trim();
                l.strip_prefix("* ").unwrap_or(l.strip_prefix('*').unwrap_or(l))
            })
            .collect();
        let lines: Vec<&str> = {
            let start = lines.iter().position(|l| !l.is_empty()).unwrap_or(lines.len());
            let end = lines.iter().rposition(|l| !l.is_empty()).map_or(start, |e| e + 1);
            lines[start..end].to_vec()
        };
        match lines.as_slice() {
            [] => String::new(),
            [one] => format!("{indent}/** {one} */\n"),
            many => {
                let mut out = format!("{indent}/**\n");
                for l in many {
                    if l.is_empty() {
                        out.push_str(&format!("{indent} *\n"));
                    } else {
                        out.push_str(&format!("{indent} * {l}\n"));
                    }
                }
                out.push_str(&format!("{indent} */\n"));
                out
            }
        }
    }

    /// ts-rs's `type X = { /** doc */ a: T, b: U, };` as an exported
    /// interface with one field a line; other declarations (string unions)
    /// are exported as they are.
    fn format_decl(decl: &str) -> String {
        let decl = decl.trim();
        let (head, body) = decl.split_once(" = ").unwrap_or_else(|| panic!("unexpected ts-rs declaration: {decl}"));
        let name = head.strip_prefix("type ").unwrap_or_else(|| panic!("unexpected ts-rs declaration: {decl}"));
        let body = body.trim_end_matches(';').trim();
        let Some(fields) = body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) else {
            return format!("export type {name} = {body};\n");
        };
        let mut out = format!("export interface {name} {{\n");
        let mut rest = fields;
        let mut field = String::new();
        let mut depth = 0usize;
        while let Some(c) = rest.chars().next() {
            if depth == 0 && rest.starts_with("/**") {
                let end = rest.find("*/").expect("unterminated doc comment") + 2;
                out.push_str(&format_comment(&rest[..end], INDENT));
                rest = &rest[end..];
                continue;
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '{' | '<' | '(' | '[' => depth += 1,
                '}' | '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    out.push_str(&format!("{INDENT}{};\n", field.trim()));
                    field.clear();
                    continue;
                }
                _ => {}
            }
            if !(c == '\n' && depth == 0) {
                field.push(c);
            }
        }
        assert!(field.trim().is_empty(), "unexpected ts-rs declaration (field after the last comma): {decl}");
        out.push_str("}\n");
        out
    }

    fn types_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("js/types.d.ts")
    }

    /// The drift test: `js/types.d.ts` (and so wasm-bindgen's d.ts, which
    /// includes it) must be what the Rust types give.
    #[test]
    fn typescript_declarations_match_the_rust_types() {
        let generated = generate();
        let path = types_path();
        if std::env::var_os("UPDATE_TYPES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            eprintln!("wrote {}", path.display());
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "sync-wasm/js/types.d.ts is out of date with the Rust types (first difference at line {}:\n  committed: {:?}\n  generated: {:?}).\nRegenerate it with\n  {REGENERATE}\nand commit the result.",
                line + 1,
                committed.lines().nth(line).unwrap_or("<end of file>"),
                generated.lines().nth(line).unwrap_or("<end of file>"),
            );
        }
    }

    /// Type-checks the generated file when a TypeScript compiler is at hand
    /// (`tsc` on PATH or in the workspace's node_modules); skipped otherwise,
    /// so `cargo test` needs no Node.
    #[test]
    fn typescript_declarations_compile_with_tsc_when_available() {
        let workspace_tsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/tsc");
        let tsc = if workspace_tsc.exists() { workspace_tsc } else { PathBuf::from("tsc") };
        if Command::new(&tsc).arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!(
                "tsc not found: js/types.d.ts not type-checked (npx -y -p typescript@5 tsc --noEmit --strict sync-wasm/js/types.d.ts)"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("grasp-sync-types-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("types.d.ts");
        std::fs::write(&file, generate()).unwrap();
        let out = Command::new(&tsc).args(["--noEmit", "--strict"]).arg(&file).output().expect("run tsc");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "tsc rejects the generated declarations:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The SPEC default each `GraspSyncTimings` comment quotes "(5000)" is
    /// the one sync-core applies: giving it changes nothing.
    #[test]
    fn typescript_timings_docs_quote_the_engine_defaults() {
        let ts = generate();
        let block = ts.split("export interface GraspSyncTimings {").nth(1).and_then(|b| b.split("\n}").next()).unwrap();
        let mut doc = "";
        let mut checked = 0;
        for line in block.lines().map(str::trim) {
            if line.starts_with("/**") {
                doc = line;
                continue;
            }
            let Some((name, _)) = line.split_once("?:") else { continue };
            let default: u64 =
                doc.rsplit_once('(').and_then(|(_, d)| d.split_once(')')).and_then(|(d, _)| d.parse().ok()).unwrap_or_else(|| {
                    panic!("GraspSyncTimings.{name}: its doc comment must end with the default in ms, e.g. (5000): {doc}")
                });
            let json =
                format!(r#"{{"bootstrapRelays":["wss://relay.example.com"],"interest":{{"all":true}},"timings":{{"{name}":{default}}}}}"#);
            let settings = serde_json::from_str::<JsConfig>(&json).unwrap().into_settings().unwrap();
            assert_eq!(
                settings.sync,
                sync_core::SyncConfig::default(),
                "GraspSyncTimings.{name}: the documented default {default} is not the engine's"
            );
            checked += 1;
        }
        assert_eq!(checked, 10, "every timing field checked");
    }

    #[test]
    fn typescript_formatting_keeps_nested_types_and_comments() {
        let got = format_decl("type A = { \n/**\n * x, y { z }\n */\nm: { [key in string]: number }, n?: Array<string> | null, };");
        assert_eq!(
            got,
            "export interface A {\n    /** x, y { z } */\n    m: { [key in string]: number };\n    n?: Array<string> | null;\n}\n"
        );
        assert_eq!(format_decl("type E = \"A\" | \"B\";"), "export type E = \"A\" | \"B\";\n");
    }
}
