//! Pure parsing of ToolJet's JSON answers and pure decisions (matching identifiers, checking an
//! export). No IO here, so all of it is unit-tested.

use serde_json::Value;

use super::{AppSummary, AppVersion, ConstantKind, Workspace, WorkspaceConstant};

fn str_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(v: &Value, key: &str, what: &str) -> Result<String, String> {
    str_field(v, key).ok_or_else(|| format!("{what} without `{key}`"))
}

/// Returns the array itself, or the first array found under one of `keys`.
fn array_in<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Vec<Value>> {
    if let Value::Array(a) = v {
        return Some(a);
    }
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_array))
}

/// `GET /api/ext/workspaces`: `[{id, name, status, groups}]` (v2 items also carry `slug`).
pub(crate) fn parse_workspaces(v: &Value) -> Result<Vec<Workspace>, String> {
    let items = array_in(v, &["organizations", "data", "workspaces"])
        .ok_or("expected a list of workspaces")?;
    items.iter().map(parse_workspace).collect()
}

/// One workspace object (ext v1 item, v2 object or internal organization row).
pub(crate) fn parse_workspace(v: &Value) -> Result<Workspace, String> {
    Ok(Workspace {
        id: required(v, "id", "workspace")?,
        name: required(v, "name", "workspace")?,
        slug: str_field(v, "slug").filter(|s| !s.is_empty()),
    })
}

/// Picks the workspace `ident` names: by id, then slug, then exact name (ToolJet's v2 order).
pub(crate) fn match_workspace<'a>(list: &'a [Workspace], ident: &str) -> Option<&'a Workspace> {
    let ident = ident.trim();
    list.iter()
        .find(|w| w.id.eq_ignore_ascii_case(ident))
        .or_else(|| list.iter().find(|w| w.slug.as_deref() == Some(ident)))
        .or_else(|| list.iter().find(|w| w.name == ident))
}

fn parse_versions_list(items: &[Value]) -> Result<Vec<AppVersion>, String> {
    items
        .iter()
        .map(|v| {
            Ok(AppVersion {
                id: required(v, "id", "version")?,
                name: required(v, "name", "version")?,
            })
        })
        .collect()
}

/// `GET /api/ext/workspace/:id/apps`: `[{id, name, slug, versions:[{id, name}]}]`; the DTO in
/// the ToolJet source also allows `{apps:[...], total}`, so both are accepted. Read straight
/// from the body into the rows below: a workspace of 1,000 apps as a [`Value`] tree takes
/// ~1 MiB for a moment, and every GitSyncConfig and set lists once per interval.
pub(crate) fn parse_ext_apps(body: &[u8]) -> Result<Vec<AppSummary>, String> {
    let rows: AppRows = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("expected a list of apps ({e})"),
        _ => format!("the body is not JSON ({e})"),
    })?;
    rows.0
        .into_iter()
        .map(|a| {
            Ok(AppSummary {
                id: a.id.required("id", "app")?,
                name: a.name.required("name", "app")?,
                slug: a.slug.0,
                versions: a
                    .versions
                    .0
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| {
                        Ok(AppVersion {
                            id: v.id.required("id", "version")?,
                            name: v.name.required("name", "version")?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            })
        })
        .collect()
}

/// A text or number field as ToolJet sends ids (what [`str_field`] reads); anything else is
/// absent.
#[derive(Default)]
struct Scalar(Option<String>);

impl Scalar {
    fn required(self, key: &str, what: &str) -> Result<String, String> {
        self.0.ok_or_else(|| format!("{what} without `{key}`"))
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Scalar(match serde_json::Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }
}

/// A list, or absent when the value is anything else (what `Value::as_array` reads).
struct List<T>(Option<Vec<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(None)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(Some(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<List<T>, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(List(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
                Ok(List(None))
            }
            fn visit_unit<E>(self) -> Result<List<T>, E> {
                Ok(List(None))
            }
        }
        d.deserialize_any(Items(std::marker::PhantomData))
    }
}

#[derive(serde::Deserialize)]
struct AppRow {
    #[serde(default)]
    id: Scalar,
    #[serde(default)]
    name: Scalar,
    #[serde(default)]
    slug: Scalar,
    #[serde(default)]
    versions: List<VersionRow>,
}

#[derive(serde::Deserialize)]
struct VersionRow {
    #[serde(default)]
    id: Scalar,
    #[serde(default)]
    name: Scalar,
}

/// The app rows of a listing: the array itself, or the array under `apps`, else `data`.
struct AppRows(Vec<AppRow>);

impl<'de> serde::Deserialize<'de> for AppRows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: that would buffer the whole body first.
        struct Rows;
        impl<'de> serde::de::Visitor<'de> for Rows {
            type Value = AppRows;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of apps, or an object with `apps`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AppRows, A::Error> {
                let mut rows = Vec::new();
                while let Some(row) = seq.next_element()? {
                    rows.push(row);
                }
                Ok(AppRows(rows))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AppRows, A::Error> {
                let (mut apps, mut data) = (List(None), List(None));
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "apps" if apps.0.is_none() => apps = map.next_value()?,
                        "data" if data.0.is_none() => data = map.next_value()?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                apps.0
                    .or(data.0)
                    .map(AppRows)
                    .ok_or_else(|| serde::de::Error::custom("no `apps` list"))
            }
        }
        d.deserialize_any(Rows)
    }
}

/// One page of `GET /api/apps?page=N`: `{meta:{total_pages,...}, apps:[...]}` (snake_case).
/// Returns the apps (without versions) and the number of pages.
pub(crate) fn parse_internal_app_page(v: &Value) -> Result<(Vec<AppSummary>, u64), String> {
    let items = v
        .get("apps")
        .and_then(Value::as_array)
        .ok_or("expected `apps` in the app list")?;
    let pages = v
        .get("meta")
        .and_then(|m| m.get("total_pages"))
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let apps = items
        .iter()
        .map(|a| {
            Ok(AppSummary {
                id: required(a, "id", "app")?,
                name: required(a, "name", "app")?,
                slug: str_field(a, "slug"),
                versions: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((apps, pages))
}

/// The page to read after `page` of `total_pages`, or `None` when done: past the last page,
/// after a page with no new app (a server repeating itself), or at the safety stop `max`.
/// `total_pages` is the server's word, so any value must be harmless.
pub(crate) fn next_page(page: u64, total_pages: u64, new_apps: bool, max: u64) -> Option<u64> {
    if !new_apps || page >= total_pages || page >= max {
        return None;
    }
    page.checked_add(1)
}

/// One app object (`GET /api/apps/:id`, v2 ext app): `{id, name, slug, ...}`.
pub(crate) fn parse_app_object(v: &Value) -> Result<AppSummary, String> {
    Ok(AppSummary {
        id: required(v, "id", "app")?,
        name: required(v, "name", "app")?,
        slug: str_field(v, "slug"),
        versions: Vec::new(),
    })
}

/// `GET /api/apps/:id/versions`: `{versions:[{id, name, ...}]}`, editing version first.
pub(crate) fn parse_versions(v: &Value) -> Result<Vec<AppVersion>, String> {
    let items = array_in(v, &["versions", "data"]).ok_or("expected `versions`")?;
    parse_versions_list(items)
}

/// `POST /api/v2/resources/import`: `{imports:{app:[{id, name}]}, success}`.
pub(crate) fn parse_session_import(v: &Value) -> Result<(String, String), String> {
    let first = v
        .get("imports")
        .and_then(|i| i.get("app"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or("expected `imports.app[0]` in the import answer")?;
    Ok((
        required(first, "id", "imported app")?,
        required(first, "name", "imported app")?,
    ))
}

/// `GET /api/metadata`: `{installed_version, ...}`.
pub(crate) fn parse_metadata_version(v: &Value) -> Option<String> {
    str_field(v, "installed_version").filter(|s| !s.is_empty())
}

/// Login answer: `{current_organization_id, ...}` (decamelized).
pub(crate) fn parse_login_org(v: &Value) -> Option<String> {
    str_field(v, "current_organization_id").or_else(|| str_field(v, "organization_id"))
}

/// Finds the value of cookie `name` among `Set-Cookie` header values; an empty value (a
/// cookie being cleared) counts as absent.
pub(crate) fn cookie_value<'a, I: IntoIterator<Item = &'a str>>(
    set_cookies: I,
    name: &str,
) -> Option<String> {
    set_cookies.into_iter().find_map(|h| {
        let pair = h.split(';').next()?.trim();
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name && !v.trim().is_empty()).then(|| v.trim().to_string())
    })
}

/// `GET /api/organization-constants`: `{constants:[{name, type, values}|{name}]}`. Only names
/// and kinds are kept: values never leave this function.
pub(crate) fn parse_constants(v: &Value) -> Result<Vec<WorkspaceConstant>, String> {
    let items = array_in(v, &["constants"]).ok_or("expected `constants`")?;
    items
        .iter()
        .map(|c| {
            let name = str_field(c, "name")
                .or_else(|| str_field(c, "constant_name"))
                .ok_or("constant without `name`")?;
            let kind = match str_field(c, "type").as_deref() {
                Some(t) if t.eq_ignore_ascii_case("secret") => ConstantKind::Secret,
                Some(_) => ConstantKind::Global,
                // ToolJet returns secrets as `{name}` only.
                None if c.get("values").is_none() => ConstantKind::Secret,
                None => ConstantKind::Global,
            };
            Ok(WorkspaceConstant { name, kind })
        })
        .collect()
}

/// How the user named an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AppIdent {
    /// `id:<uuid>` or a bare UUID.
    Id(String),
    /// Anything else: the exact app name.
    Name(String),
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `"id:<uuid>"` or a UUID -> by id, otherwise by exact name.
pub(crate) fn parse_app_ident(ident: &str) -> AppIdent {
    if let Some(rest) = ident.strip_prefix("id:") {
        return AppIdent::Id(rest.trim().to_ascii_lowercase());
    }
    if is_uuid(ident.trim()) {
        return AppIdent::Id(ident.trim().to_ascii_lowercase());
    }
    AppIdent::Name(ident.to_string())
}

/// Finds an app by identifier. A bare UUID that matches no id falls back to a name match (an app
/// may be named like a UUID); `id:` never does.
pub(crate) fn match_app<'a>(apps: &'a [AppSummary], ident: &str) -> Option<&'a AppSummary> {
    match parse_app_ident(ident) {
        AppIdent::Id(id) => apps
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(&id))
            .or_else(|| {
                if ident.starts_with("id:") {
                    None
                } else {
                    apps.iter().find(|a| a.name == ident)
                }
            }),
        AppIdent::Name(name) => apps.iter().find(|a| a.name == name),
    }
}

/// Finds a version by id, then by name.
pub(crate) fn match_version<'a>(versions: &'a [AppVersion], ident: &str) -> Option<&'a AppVersion> {
    versions
        .iter()
        .find(|v| v.id.eq_ignore_ascii_case(ident))
        .or_else(|| versions.iter().find(|v| v.name == ident))
}

/// What an import needs from an export: the single app entry and its `tooljet_version`.
pub(crate) struct ExportParts<'a> {
    pub definition: &'a Value,
    pub tooljet_version: &'a str,
}

/// Checks that `export` is a ToolJet export of exactly one app (reference §2).
pub(crate) fn check_export(export: &Value) -> Result<ExportParts<'_>, String> {
    let obj = export.as_object().ok_or("it is not a JSON object")?;
    let apps = obj
        .get("app")
        .and_then(Value::as_array)
        .ok_or("it has no `app` list")?;
    if apps.len() != 1 {
        return Err(format!(
            "it holds {} apps, exactly one is expected",
            apps.len()
        ));
    }
    let definition = apps[0]
        .get("definition")
        .filter(|d| d.is_object())
        .ok_or("`app[0].definition` is missing")?;
    let tooljet_version = obj
        .get("tooljet_version")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("`tooljet_version` is missing")?;
    Ok(ExportParts {
        definition,
        tooljet_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workspaces_and_matching() {
        let list = parse_workspaces(&json!([
            {"id": "11111111-1111-1111-1111-111111111111", "name": "Sales", "status": "active", "groups": []},
            {"id": "22222222-2222-2222-2222-222222222222", "name": "ops", "slug": "sales"}
        ]))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            match_workspace(&list, "11111111-1111-1111-1111-111111111111")
                .unwrap()
                .name,
            "Sales"
        );
        // slug beats name, as in ToolJet's v2 resolution order
        assert_eq!(match_workspace(&list, "sales").unwrap().name, "ops");
        assert_eq!(match_workspace(&list, "Sales").unwrap().name, "Sales");
        assert!(match_workspace(&list, "nope").is_none());
        let orgs = parse_workspaces(
            &json!({"organizations": [{"id": "a", "name": "b", "slug": "c"}], "total_count": 1}),
        )
        .unwrap();
        assert_eq!(orgs[0].slug.as_deref(), Some("c"));
        assert!(parse_workspaces(&json!({"x": 1})).is_err());
    }

    #[test]
    fn apps() {
        let ext = |v: Value| parse_ext_apps(v.to_string().as_bytes());
        let apps = ext(
            json!([{"id": "a", "name": "A", "slug": "a", "versions": [{"id": "v", "name": "v1"}]}]),
        )
        .unwrap();
        assert_eq!(apps[0].versions[0].name, "v1");
        assert_eq!(apps[0].slug.as_deref(), Some("a"));
        let apps = ext(
            json!({"total": 1, "apps": [{"id": 7, "name": "A", "slug": null, "x": {"y": [1]}}]}),
        )
        .unwrap();
        assert!(apps[0].versions.is_empty());
        assert_eq!((apps[0].id.as_str(), apps[0].slug.as_deref()), ("7", None));
        let apps = ext(json!({"data": [{"id": "b", "name": "B", "versions": null}]})).unwrap();
        assert_eq!(apps[0].name, "B");
        let apps =
            ext(json!({"data": [], "apps": [{"id": "c", "name": "C", "versions": {"v": 1}}]}))
                .unwrap();
        assert_eq!(
            apps[0].name, "C",
            "`apps` before `data`, a non-list `versions` is none"
        );
        assert!(apps[0].versions.is_empty());
        let apps =
            ext(json!({"apps": 12, "data": [{"id": "d", "name": "D", "versions": "x"}]})).unwrap();
        assert_eq!(apps[0].name, "D");
        assert!(parse_ext_apps(b"<html>")
            .unwrap_err()
            .starts_with("the body is not JSON"));
        assert!(ext(json!({"total": 0}))
            .unwrap_err()
            .starts_with("expected a list of apps"));
        assert!(ext(json!({"total": 0})).is_err());
        assert!(ext(json!("apps")).is_err());
        assert!(parse_ext_apps(b"").is_err());
        assert!(parse_ext_apps(b"[{\"id\": \"a\",").is_err());
        assert_eq!(
            ext(json!([{"id": "a", "name": "A", "versions": [{"id": "v"}]}])).unwrap_err(),
            "version without `name`"
        );
        let (page, pages) = parse_internal_app_page(
            &json!({"meta": {"total_pages": 3}, "apps": [{"id": "a", "name": "A", "slug": "s"}]}),
        )
        .unwrap();
        assert_eq!((page.len(), pages), (1, 3));
        assert_eq!(
            ext(json!([{"name": "no id"}])).unwrap_err(),
            "app without `id`"
        );
    }

    #[test]
    fn app_idents() {
        let u = "3F2504E0-4F89-11D3-9A0C-0305E82C3301";
        assert_eq!(
            parse_app_ident(&format!("id:{u}")),
            AppIdent::Id(u.to_ascii_lowercase())
        );
        assert_eq!(parse_app_ident(u), AppIdent::Id(u.to_ascii_lowercase()));
        assert_eq!(
            parse_app_ident("Sales Dashboard"),
            AppIdent::Name("Sales Dashboard".into())
        );
        let apps = vec![
            AppSummary {
                id: u.to_ascii_lowercase(),
                name: "X".into(),
                slug: None,
                versions: vec![],
            },
            AppSummary {
                id: "other".into(),
                name: "Sales Dashboard".into(),
                slug: None,
                versions: vec![],
            },
        ];
        assert_eq!(match_app(&apps, u).unwrap().name, "X");
        assert_eq!(match_app(&apps, "Sales Dashboard").unwrap().id, "other");
        assert!(match_app(&apps, "sales dashboard").is_none());
        assert!(match_app(&apps, "id:00000000-0000-0000-0000-000000000000").is_none());
    }

    #[test]
    fn versions() {
        let vs = parse_versions(
            &json!({"versions": [{"id": "i2", "name": "v2"}, {"id": "i1", "name": "v1"}]}),
        )
        .unwrap();
        assert_eq!(match_version(&vs, "v1").unwrap().id, "i1");
        assert_eq!(match_version(&vs, "i2").unwrap().name, "v2");
        assert!(match_version(&vs, "v3").is_none());
    }

    #[test]
    fn cookies() {
        let headers = ["other=1; Path=/", "tj_auth_token=abc.def; Path=/; HttpOnly"];
        assert_eq!(
            cookie_value(headers, "tj_auth_token").as_deref(),
            Some("abc.def")
        );
        assert_eq!(
            cookie_value(["tj_auth_token=; Max-Age=0"], "tj_auth_token"),
            None
        );
    }

    #[test]
    fn constants_keep_no_values() {
        let c = parse_constants(&json!({"constants": [
            {"id": "1", "name": "API_URL", "type": "Global", "values": [{"environmentName": "production", "value": "https://x"}]},
            {"name": "API_KEY"}
        ]}))
        .unwrap();
        assert_eq!(c[0].kind, ConstantKind::Global);
        assert_eq!(c[1].kind, ConstantKind::Secret);
        assert!(!format!("{c:?}").contains("https://x"));
    }

    #[test]
    fn exports() {
        let ok = json!({"app": [{"definition": {"appV2": {}}}], "tooljet_version": "3.16.0"});
        assert_eq!(check_export(&ok).unwrap().tooljet_version, "3.16.0");
        assert!(check_export(&json!([])).is_err());
        assert!(check_export(&json!({"app": [], "tooljet_version": "1"})).is_err());
        assert!(check_export(&json!({"app": [{"definition": {}}]})).is_err());
        assert!(check_export(&json!({"app": [{}], "tooljet_version": "1"})).is_err());
    }

    #[test]
    fn misc() {
        assert_eq!(
            parse_metadata_version(&json!({"installed_version": "3.16.0"})).as_deref(),
            Some("3.16.0")
        );
        assert_eq!(
            parse_login_org(&json!({"current_organization_id": "o"})).as_deref(),
            Some("o")
        );
        assert_eq!(
            parse_session_import(
                &json!({"imports": {"app": [{"id": "i", "name": "n"}]}, "success": true})
            )
            .unwrap(),
            ("i".into(), "n".into())
        );
        assert!(is_uuid("3f2504e0-4f89-11d3-9a0c-0305e82c3301"));
        assert!(!is_uuid("3f2504e0-4f89-11d3-9a0c-0305e82c33é"));
        assert!(!is_uuid("3f2504e0-4f89-11d3-9a0c-0305e82c330"));
    }

    #[test]
    fn server_page_counts_cannot_overflow_or_loop() {
        let page = |total: Value| {
            parse_internal_app_page(&json!({"meta": {"total_pages": total}, "apps": []}))
                .unwrap()
                .1
        };
        assert_eq!(page(json!(u64::MAX)), u64::MAX);
        assert_eq!(page(json!(1e300)), 1);
        assert_eq!(page(json!(-5)), 1);
        assert_eq!(page(json!("7")), 1);
        assert_eq!(page(json!(null)), 1);
        assert_eq!(next_page(1, u64::MAX, true, 1000), Some(2));
        assert_eq!(next_page(1000, u64::MAX, true, 1000), None);
        assert_eq!(next_page(u64::MAX, u64::MAX, true, u64::MAX), None);
        assert_eq!(
            next_page(u64::MAX - 1, u64::MAX, true, u64::MAX),
            Some(u64::MAX)
        );
        assert_eq!(next_page(3, 0, true, 1000), None);
        assert_eq!(next_page(1, 5, false, 1000), None);
        assert_eq!(next_page(4, 5, true, 1000), Some(5));
        assert_eq!(next_page(5, 5, true, 1000), None);
    }
}
