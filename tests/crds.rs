//! The committed CRDs are what the code generates, the chart ships the same CRDs, and every
//! example manifest is valid against them.

use std::path::{Path, PathBuf};

use tooljet_gitsync_operator::api::{crds_yaml, AppSync, AppSyncSet, GitSyncConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_crds_are_fresh() {
    for (name, yaml) in crds_yaml().unwrap() {
        let path = root().join("crds").join(format!("{name}.yaml"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&path, &yaml).unwrap();
            continue;
        }
        assert_eq!(
            committed,
            yaml,
            "{} is stale: run `UPDATE_CRDS=1 cargo test --test crds` and `.ci/sync-chart-crds.sh`",
            path.display()
        );
    }
}

#[test]
fn chart_ships_the_same_crds() {
    for (name, yaml) in crds_yaml().unwrap() {
        let path = root()
            .join("charts/tooljet-gitsync-operator/crds")
            .join(format!("{name}.yaml"));
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            shipped,
            yaml,
            "{} differs: run .ci/sync-chart-crds.sh",
            path.display()
        );
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn schemas() -> Vec<(String, serde_json::Value)> {
    crds_yaml()
        .unwrap()
        .into_iter()
        .map(|(_, y)| {
            let crd: serde_json::Value = serde_yaml::from_str(&y).unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            (
                kind,
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_example_is_valid_against_the_crds() {
    let schemas = schemas();
    let mut files = Vec::new();
    yaml_files(&root().join("examples"), &mut files);
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap();
            if v["apiVersion"] != "gitsync.tooljet.io/v1alpha1" {
                continue;
            }
            let kind = v["kind"].as_str().unwrap();
            let (_, schema) = schemas.iter().find(|(k, _)| k == kind).unwrap();
            let validator = jsonschema::validator_for(schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&v)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{}: {kind} invalid: {errors:?}",
                f.display()
            );
            match kind {
                "GitSyncConfig" => {
                    drop(serde_json::from_value::<GitSyncConfig>(v.clone()).unwrap())
                }
                "AppSync" => drop(serde_json::from_value::<AppSync>(v.clone()).unwrap()),
                "AppSyncSet" => drop(serde_json::from_value::<AppSyncSet>(v.clone()).unwrap()),
                other => panic!("unknown kind {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} example objects found");
}

#[test]
fn schema_rejects_what_users_get_wrong() {
    let schemas = schemas();
    let (_, gsc) = schemas.iter().find(|(k, _)| k == "GitSyncConfig").unwrap();
    let v = jsonschema::validator_for(gsc).unwrap();
    let base = serde_json::json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "GitSyncConfig",
        "metadata": {"name": "x"},
        "spec": {"repository": {"url": "git@h:r.git"}, "tooljet": {"url": "https://t", "workspace": "w", "credentialsSecretRef": {"name": "s"}}}
    });
    assert!(v.is_valid(&base));
    for (path, bad) in [
        ("/spec/deployKey", serde_json::json!({"type": "dsa"})),
        ("/spec/interval", serde_json::json!("often")),
        ("/spec/tooljet/url", serde_json::json!("tooljet.local")),
        (
            "/spec/commitAuthor",
            serde_json::json!({"name": "a <b>", "email": "a@b"}),
        ),
    ] {
        let mut doc = base.clone();
        let parent = path.rsplit_once('/').unwrap();
        doc.pointer_mut(parent.0).unwrap()[parent.1] = bad;
        assert!(!v.is_valid(&doc), "{path} accepted");
    }
}

use serde::Deserialize;

#[test]
fn appsyncset_schema_bounds_what_a_set_selects() {
    let schemas = schemas();
    let (_, apss) = schemas.iter().find(|(k, _)| k == "AppSyncSet").unwrap();
    let v = jsonschema::validator_for(apss).unwrap();
    let base = serde_json::json!({
        "apiVersion": "gitsync.tooljet.io/v1alpha1", "kind": "AppSyncSet",
        "metadata": {"name": "x"},
        "spec": {"gitSyncConfigRef": {"name": "sales"}, "direction": "Push", "apps": {"include": ["*"]}}
    });
    assert!(v.is_valid(&base));
    for (path, bad) in [
        ("/spec/direction", serde_json::json!("Both")),
        ("/spec/apps", serde_json::json!({"include": [""]})),
        ("/spec/apps", serde_json::json!({"exclude": vec!["x"; 101]})),
        ("/spec/gitSyncConfigRef", serde_json::json!({})),
    ] {
        let mut doc = base.clone();
        *doc.pointer_mut(path).unwrap_or_else(|| panic!("{path}")) = bad.clone();
        assert!(!v.is_valid(&doc), "{path} = {bad} accepted");
    }
}
