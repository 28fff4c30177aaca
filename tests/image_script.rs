//! `hack/image.sh` builds the image without Docker; these checks keep it in step with the
//! Dockerfile's final stage (base, packages, user, directories, environment, entrypoint), so a
//! change to one that is not made to the other fails here. The built image's own config is
//! checked against the Dockerfile again in `tests/cluster/` (`image_config_matches_the_dockerfile`).

use std::collections::BTreeMap;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the final stage of the Dockerfile says.
#[derive(Debug, Default, PartialEq)]
pub struct Stage {
    base: String,
    packages: Vec<String>,
    gid: String,
    uid: String,
    user: String,
    home: String,
    shell: String,
    data_dir: String,
    bin_path: String,
    env_home: String,
    user_directive: String,
    workdir: String,
    expose: String,
    entrypoint: String,
    cmd: String,
}

fn dockerfile_final_stage(text: &str) -> Stage {
    // Continuation lines joined, then only the last FROM's instructions.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let mut s = Stage {
        base: lines[last_from]
            .trim_start_matches("FROM ")
            .trim()
            .to_string(),
        ..Stage::default()
    };
    for l in &lines[last_from + 1..] {
        let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();
        let after = |flag: &str| -> String {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
                .unwrap_or_default()
        };
        match op {
            "RUN" if rest.contains("apt-get install") => {
                let i = words.iter().position(|w| *w == "install").unwrap();
                s.packages = words[i + 1..]
                    .iter()
                    .take_while(|w| **w != "&&")
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| w.to_string())
                    .collect();
                assert!(
                    words.contains(&"--no-install-recommends"),
                    "the script installs without recommends"
                );
            }
            "RUN" if rest.contains("groupadd") => {
                s.gid = after("--gid");
                s.uid = after("--uid");
                s.home = after("--home-dir");
                s.shell = after("--shell");
                let useradd = words.iter().position(|w| *w == "useradd").unwrap();
                s.user = words[useradd..]
                    .iter()
                    .take_while(|w| **w != "&&")
                    .last()
                    .unwrap()
                    .to_string();
                let install = words.iter().position(|w| *w == "install").unwrap();
                s.data_dir = words[install..].last().unwrap().to_string();
                assert_eq!(after("-o"), s.uid, "data dir owner");
                assert_eq!(after("-m"), "0750", "data dir mode");
            }
            "COPY" => s.bin_path = words.last().unwrap().to_string(),
            "ENV" => s.env_home = rest.trim_start_matches("HOME=").to_string(),
            "USER" => s.user_directive = rest.to_string(),
            "WORKDIR" => s.workdir = rest.to_string(),
            "EXPOSE" => s.expose = rest.to_string(),
            "ENTRYPOINT" => s.entrypoint = exec_form(rest).join(" "),
            "CMD" => s.cmd = exec_form(rest).join(" "),
            _ => {}
        }
    }
    s
}

fn exec_form(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("exec form {s}: {e}"))
}

/// `NAME=value` and `NAME=(a b c)` assignments at the top of the script.
fn script_vars(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for l in text.lines() {
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if !k.chars().all(|c| c.is_ascii_uppercase() || c == '_') || k.is_empty() {
            continue;
        }
        let v = v.trim_start_matches('(').trim_end_matches(')');
        vars.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    vars
}

fn script_stage(text: &str) -> Stage {
    let v = script_vars(text);
    let get = |k: &str| {
        v.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} in hack/image.sh"))
    };
    assert!(
        text.contains("--variant=minbase") && text.contains(" bookworm "),
        "the script's base is bookworm minbase"
    );
    assert!(text.contains("APT::Install-Recommends \"false\""));
    let uid = get("IMAGE_UID");
    Stage {
        base: "debian:bookworm-slim".into(),
        packages: get("PACKAGES")
            .split_whitespace()
            .map(String::from)
            .collect(),
        gid: uid.clone(),
        uid: uid.clone(),
        user: get("IMAGE_USER"),
        home: get("IMAGE_HOME"),
        shell: "/usr/sbin/nologin".into(),
        data_dir: get("DATA_DIR"),
        bin_path: get("BIN_PATH"),
        env_home: get("IMAGE_HOME"),
        user_directive: format!("{uid}:{uid}"),
        workdir: get("IMAGE_HOME"),
        expose: get("EXPOSE"),
        entrypoint: get("ENTRYPOINT"),
        cmd: get("CMD"),
    }
}

#[test]
fn image_script_builds_what_the_dockerfile_builds() {
    let docker = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let script = std::fs::read_to_string(format!("{ROOT}/hack/image.sh")).unwrap();
    let d = dockerfile_final_stage(&docker);
    let s = script_stage(&script);
    assert_eq!(d.base, "debian:bookworm-slim");
    assert!(!d.packages.is_empty() && !d.uid.is_empty() && !d.entrypoint.is_empty());
    assert_eq!(
        s, d,
        "hack/image.sh and the Dockerfile's final stage differ"
    );
    // The hooks use the same useradd/groupadd flags as the Dockerfile.
    assert!(script.contains("--shell /usr/sbin/nologin") && script.contains("--no-create-home"));
    assert!(script.contains("--system --gid $IMAGE_UID"));
}

#[test]
fn the_parser_notices_a_difference() {
    let docker = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let script = std::fs::read_to_string(format!("{ROOT}/hack/image.sh")).unwrap();
    let changed = docker.replace("openssh-client ca-certificates", "openssh-client");
    assert_ne!(
        dockerfile_final_stage(&changed),
        script_stage(&script),
        "a dropped package must show"
    );
    let changed = script.replace("IMAGE_UID=65532", "IMAGE_UID=1000");
    assert_ne!(dockerfile_final_stage(&docker), script_stage(&changed));
    let changed = docker.replace("CMD [\"run\"]", "CMD [\"crd\"]");
    assert_ne!(dockerfile_final_stage(&changed), script_stage(&script));
}
