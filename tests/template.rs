//! `template.yaml` against the code it deploys: the table is the one the
//! DynamoDB store expects, the function gets every environment variable the
//! Lambda entry reads, and its role grants exactly the DynamoDB actions the
//! store calls (derived by reading `src/store/dynamodb/`), nothing more.
//!
//! Run: `cargo test --test template`.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

const TABLE: &str = "ScimTable";
const SECRET_ENV: &str = "CURSOR_KEY_SECRET_ARN";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn template() -> Value {
    serde_norway::from_str(&read(&root().join("template.yaml"))).unwrap()
}

fn resources(t: &Value) -> BTreeMap<String, Value> {
    t.get("Resources")
        .and_then(Value::as_mapping)
        .expect("template has Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn resource<'a>(res: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    res.get(name)
        .unwrap_or_else(|| panic!("template has no resource {name}"))
}

fn props<'a>(r: &'a Value, what: &str) -> &'a Value {
    r.get("Properties")
        .unwrap_or_else(|| panic!("{what} has no Properties"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An intrinsic function call, short (`!Ref X`) or long (`{Ref: X}`) form:
/// its name (`Ref`, `GetAtt`, …) and argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            let name = k.strip_prefix("Fn::").unwrap_or(k);
            (k == "Ref" || k.starts_with("Fn::")).then(|| (name.to_owned(), arg))
        }
        _ => None,
    }
}

/// `!Ref name`?
fn refers_to(v: &Value, name: &str) -> bool {
    matches!(intrinsic(v), Some((f, arg)) if f == "Ref" && arg.as_str() == Some(name))
}

/// `!GetAtt name.Arn` (either spelling)?
fn arn_of(v: &Value, name: &str) -> bool {
    match intrinsic(v) {
        Some((f, arg)) if f == "GetAtt" => match arg {
            Value::String(s) => s == &format!("{name}.Arn"),
            Value::Sequence(s) => {
                s.len() == 2 && s[0].as_str() == Some(name) && s[1].as_str() == Some("Arn")
            }
            _ => false,
        },
        _ => false,
    }
}

/// A string or a list of strings (IAM `Action`, `Resource`).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(s) => s
            .iter()
            .map(|x| x.as_str().expect("a string").to_owned())
            .collect(),
        other => panic!("expected a string or list of strings, got {other:?}"),
    }
}

fn values(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(s) => s.iter().collect(),
        other => vec![other],
    }
}

/// The one `AWS::Serverless::Function`.
fn function(res: &BTreeMap<String, Value>) -> (&str, &Value) {
    let fns: Vec<_> = res
        .iter()
        .filter(|(_, r)| str_of(r, "Type") == Some("AWS::Serverless::Function"))
        .collect();
    assert_eq!(fns.len(), 1, "expected exactly one function");
    (fns[0].0.as_str(), fns[0].1)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Source without an inline `#[cfg(test)] mod … { … }` (by convention at
/// the end of a file): test code may call what production code does not.
fn without_test_module(src: &str) -> &str {
    let mut from = 0;
    while let Some(i) = src[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = src[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod ") && rest.split(['\n', ';']).next().unwrap().contains('{') {
            return &src[..at];
        }
        from = at + 1;
    }
    src
}

// ------------------------------------------------------------------- table

/// What `src/store/dynamodb/keys.rs` names the TTL attribute.
fn expires_at_in_code() -> String {
    let keys = read(&root().join("src/store/dynamodb/keys.rs"));
    let line = keys
        .lines()
        .find(|l| l.contains("const EXPIRES_AT"))
        .expect("keys.rs defines EXPIRES_AT");
    line.split('"')
        .nth(1)
        .expect("EXPIRES_AT is a literal")
        .to_owned()
}

#[test]
fn the_table_is_the_one_the_store_expects() {
    let t = template();
    let res = resources(&t);
    let table = resource(&res, TABLE);
    assert_eq!(str_of(table, "Type"), Some("AWS::DynamoDB::Table"));
    // Stack deletion or replacement must never take the data with it.
    assert_eq!(str_of(table, "DeletionPolicy"), Some("Retain"));
    assert_eq!(str_of(table, "UpdateReplacePolicy"), Some("Retain"));
    let p = props(table, TABLE);

    let keys: Vec<(&str, &str)> = p
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .expect("KeySchema")
        .iter()
        .map(|k| {
            (
                str_of(k, "AttributeName").unwrap(),
                str_of(k, "KeyType").unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [("PK", "HASH"), ("SK", "RANGE")]);
    let attrs: BTreeSet<(&str, &str)> = p
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            (
                str_of(a, "AttributeName").unwrap(),
                str_of(a, "AttributeType").unwrap(),
            )
        })
        .collect();
    assert_eq!(attrs, BTreeSet::from([("PK", "S"), ("SK", "S")]));
    assert_eq!(str_of(p, "BillingMode"), Some("PAY_PER_REQUEST"));
    assert!(
        p.get("GlobalSecondaryIndexes").is_none() && p.get("LocalSecondaryIndexes").is_none(),
        "the store uses no secondary index (infra/dynamodb.md); the IAM grant covers the table only"
    );

    let ttl = p.get("TimeToLiveSpecification").expect("TTL");
    assert_eq!(
        str_of(ttl, "AttributeName"),
        Some(expires_at_in_code().as_str())
    );
    assert_eq!(ttl.get("Enabled").and_then(Value::as_bool), Some(true));
    assert_eq!(
        p.get("PointInTimeRecoverySpecification")
            .and_then(|s| s.get("PointInTimeRecoveryEnabled"))
            .and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        p.get("DeletionProtectionEnabled").and_then(Value::as_bool),
        Some(true)
    );
}

// ------------------------------------------------------------- environment

/// Environment variables the Lambda entry may read that the template need
/// not set, and why.
const OPTIONAL_ENV: &[(&str, &str)] = &[
    ("SCIM_DATA_DIR", "only used by the embedded store"),
    (
        "CURSOR_KEY",
        "the plain key for local runs; on AWS the key comes from the secret",
    ),
    (
        "PUBLIC_BASE_URL",
        "only with a custom domain (set conditionally)",
    ),
    ("LOG_FORMAT", "JSON is the default in Lambda"),
    ("RUST_LOG", "the level follows the function's LoggingConfig"),
];

/// Names read through `env("X")`, `var("X")`, `var_os("X")` or
/// `lookup("X")` in the files that start the Lambda runtime.
fn env_read_by_lambda_entry() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut entries = 0;
    for path in rust_files(&root().join("src")) {
        let src = read(&path);
        if !(src.contains("lambda_http::run(") || src.contains("lambda_runtime::run(")) {
            continue;
        }
        entries += 1;
        let src = without_test_module(&src);
        for (i, _) in src.match_indices("(\"") {
            let ident: String = src[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !["env", "var", "var_os", "lookup"].contains(&ident.as_str()) {
                continue;
            }
            let lit = src[i + 2..].split('"').next().unwrap();
            if !lit.is_empty()
                && lit
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(lit.to_owned());
            }
        }
    }
    assert!(
        entries > 0,
        "no file in src/ calls lambda_http::run: where is the Lambda entry?"
    );
    names
}

#[test]
fn the_function_gets_every_variable_the_lambda_entry_reads() {
    let t = template();
    let res = resources(&t);
    let (name, f) = function(&res);
    let env = props(f, name)
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .expect("the function has Environment.Variables");
    let var = |k: &str| env.get(k);
    let set: BTreeSet<String> = env.keys().map(|k| k.as_str().unwrap().to_owned()).collect();

    // What the Lambda entry needs on AWS, whatever the code reads today.
    assert_eq!(var("STORE").and_then(Value::as_str), Some("dynamodb"));
    assert!(
        var("TABLE_NAME").is_some_and(|v| refers_to(v, TABLE)),
        "TABLE_NAME must be !Ref {TABLE}"
    );
    assert_eq!(
        var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").and_then(Value::as_str),
        Some("true")
    );
    let secret = var(SECRET_ENV)
        .and_then(intrinsic)
        .filter(|(f, _)| f == "Ref")
        .and_then(|(_, arg)| arg.as_str())
        .unwrap_or_else(|| panic!("{SECRET_ENV} must be !Ref of the cursor key secret"));
    let secret_res = resource(&res, secret);
    assert_eq!(
        str_of(secret_res, "Type"),
        Some("AWS::SecretsManager::Secret")
    );
    assert!(
        props(secret_res, secret)
            .get("GenerateSecretString")
            .is_some(),
        "the cursor key is generated by Secrets Manager, never written in the template"
    );
    assert!(
        var("CURSOR_KEY").is_none(),
        "no plaintext key in the function configuration: use {SECRET_ENV}"
    );

    // And everything the code reads is either set or known to be optional.
    let read = env_read_by_lambda_entry();
    assert!(
        read.contains("STORE") && read.contains("TABLE_NAME"),
        "scanning the Lambda entry found {read:?}"
    );
    let missing: Vec<_> = read
        .iter()
        .filter(|n| !set.contains(*n))
        .filter(|n| !n.starts_with("AWS_")) // set by the Lambda runtime
        .filter(|n| !OPTIONAL_ENV.iter().any(|(o, _)| o == n))
        .collect();
    assert!(
        missing.is_empty(),
        "the Lambda entry reads {missing:?}, which template.yaml does not set \
         (set it in the function's Environment, or add it to OPTIONAL_ENV with the reason)"
    );
}

// --------------------------------------------------------------------- IAM

/// `get_item` → `GetItem`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// DynamoDB client operations (the SDK's fluent builders, `client.op()`).
const DYNAMODB_OPS: &[&str] = &[
    "batch_execute_statement",
    "batch_get_item",
    "batch_write_item",
    "create_backup",
    "create_global_table",
    "create_table",
    "delete_backup",
    "delete_item",
    "delete_table",
    "describe_backup",
    "describe_continuous_backups",
    "describe_endpoints",
    "describe_limits",
    "describe_table",
    "describe_time_to_live",
    "execute_statement",
    "execute_transaction",
    "export_table_to_point_in_time",
    "get_item",
    "list_backups",
    "list_tables",
    "list_tags_of_resource",
    "put_item",
    "query",
    "restore_table_from_backup",
    "scan",
    "tag_resource",
    "transact_get_items",
    "transact_write_items",
    "untag_resource",
    "update_continuous_backups",
    "update_item",
    "update_table",
    "update_time_to_live",
];

/// The IAM actions the DynamoDB store needs: every SDK call in
/// `src/store/dynamodb/` (without `table.rs`, which only creates tables in
/// the emulator, and the tests), mapped `snake_case` → `dynamodb:PascalCase`.
/// Transactions are not an IAM action of their own: `TransactWriteItems`
/// is authorised per contained action (Put → PutItem, Update → UpdateItem,
/// Delete → DeleteItem, ConditionCheck → ConditionCheckItem), and
/// `TransactGetItems` as GetItem.
fn dynamodb_actions_in_code() -> BTreeMap<String, String> {
    let dir = root().join("src/store/dynamodb");
    let mut actions = BTreeMap::new();
    let mut add = |action: String, why: String| {
        actions.entry(action).or_insert(why);
    };
    for path in rust_files(&dir) {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        if file == "table.rs" || file == "tests.rs" {
            continue;
        }
        let full = read(&path);
        let src = without_test_module(&full);
        let compact: String = src.chars().filter(|c| !c.is_whitespace()).collect();
        for op in DYNAMODB_OPS {
            if !compact.contains(&format!(".{op}()")) {
                continue;
            }
            let why = format!("{file}: .{op}()");
            match *op {
                "transact_write_items" => {} // per contained action, below
                "transact_get_items" => add("dynamodb:GetItem".into(), why),
                "execute_statement" | "batch_execute_statement" | "execute_transaction" => {
                    panic!("{why}: PartiQL needs dynamodb:PartiQL* actions; map them here")
                }
                _ => add(format!("dynamodb:{}", pascal(op)), why),
            }
        }
        for (kind, action) in [
            ("put", "PutItem"),
            ("update", "UpdateItem"),
            ("delete", "DeleteItem"),
            ("condition_check", "ConditionCheckItem"),
        ] {
            if compact.contains(&format!("TransactWriteItem::builder().{kind}(")) {
                add(
                    format!("dynamodb:{action}"),
                    format!("{file}: TransactWriteItem .{kind}()"),
                );
            }
        }
    }
    actions
}

/// Every statement of the function's role, with the policy it is in.
fn role_statements(res: &BTreeMap<String, Value>) -> Vec<(String, Value)> {
    let (name, f) = function(res);
    let p = props(f, name);
    assert!(
        p.get("Policies").is_none(),
        "use explicit statements on the role, not SAM policy templates \
         (DynamoDBCrudPolicy grants Scan, table management and more)"
    );
    let role_ref = p.get("Role").expect("the function names its Role");
    let role = res
        .iter()
        .find(|(n, _)| arn_of(role_ref, n))
        .map(|(n, r)| (n.clone(), r))
        .expect("Role is !GetAtt <role in this template>.Arn");
    assert_eq!(str_of(role.1, "Type"), Some("AWS::IAM::Role"));
    let rp = props(role.1, &role.0);
    assert!(
        rp.get("ManagedPolicyArns").is_none(),
        "no managed policies on the function role (AWSLambdaBasicExecutionRole grants logs on *)"
    );
    // No other policy resource may attach more to the role.
    for (n, r) in res {
        if let Some(ty @ ("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy")) = str_of(r, "Type") {
            panic!("{n} ({ty}) may add to the function's role; put statements on the role");
        }
    }
    let mut out = Vec::new();
    for policy in values(rp.get("Policies").expect("the role has Policies")) {
        let pname = str_of(policy, "PolicyName").unwrap_or("?").to_owned();
        let doc = policy.get("PolicyDocument").expect("PolicyDocument");
        for st in values(doc.get("Statement").expect("Statement")) {
            out.push((pname.clone(), st.clone()));
        }
    }
    out
}

#[test]
fn the_role_grants_exactly_the_dynamodb_calls_the_store_makes() {
    let t = template();
    let res = resources(&t);
    let code = dynamodb_actions_in_code();
    // The store's core calls; if the scan misses these, it is broken.
    for a in ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"] {
        assert!(
            code.contains_key(a),
            "scan of src/store/dynamodb found {code:?}"
        );
    }

    let mut granted = BTreeSet::new();
    for (policy, st) in role_statements(&res) {
        assert_eq!(
            str_of(&st, "Effect"),
            Some("Allow"),
            "{policy}: only Allow statements"
        );
        let actions = strings(st.get("Action").expect("Action"));
        for a in &actions {
            assert!(!a.contains('*'), "{policy}: wildcard action {a}");
        }
        let resources = values(st.get("Resource").expect("Resource"));
        for r in &resources {
            assert_ne!(r.as_str(), Some("*"), "{policy}: Resource \"*\"");
        }
        if actions.iter().any(|a| a.starts_with("dynamodb:")) {
            assert!(
                actions.iter().all(|a| a.starts_with("dynamodb:")),
                "{policy}: keep DynamoDB actions in statements of their own"
            );
            assert!(
                resources.len() == 1 && arn_of(resources[0], TABLE),
                "{policy}: DynamoDB actions only on !GetAtt {TABLE}.Arn (no index, no other table)"
            );
            granted.extend(actions.iter().cloned());
        }
    }

    let called: BTreeSet<String> = code.keys().cloned().collect();
    let extra: Vec<_> = granted.difference(&called).collect();
    let missing: Vec<_> = called
        .difference(&granted)
        .map(|a| format!("{a} ({})", code[a]))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "template.yaml grants DynamoDB actions the code never calls: {extra:?}; \
         and misses ones it calls: {missing:?}"
    );
    assert!(!granted.contains("dynamodb:Scan"), "the store never scans");
}

#[test]
fn the_role_grants_only_this_stacks_secret_logs_and_no_email_yet() {
    let t = template();
    let res = resources(&t);
    let (name, f) = function(&res);
    let env = props(f, name)
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .unwrap();
    let secret = intrinsic(env.get(SECRET_ENV).unwrap())
        .and_then(|(_, a)| a.as_str())
        .unwrap()
        .to_owned();
    let log_group = props(f, name)
        .get("LoggingConfig")
        .and_then(|l| l.get("LogGroup"))
        .and_then(intrinsic)
        .and_then(|(_, a)| a.as_str())
        .expect("LoggingConfig.LogGroup is !Ref of the log group")
        .to_owned();

    let sends_email = rust_files(&root().join("src")).iter().any(|p| {
        let s = read(p);
        s.contains("aws_sdk_sesv2") || s.contains("aws_sdk_ses")
    });
    for (policy, st) in role_statements(&res) {
        let actions = strings(st.get("Action").unwrap());
        let resources = values(st.get("Resource").unwrap());
        for a in &actions {
            let service = a.split(':').next().unwrap();
            match service {
                "dynamodb" => {} // the test above
                "secretsmanager" => {
                    assert_eq!(
                        a, "secretsmanager:GetSecretValue",
                        "{policy}: the function only reads secrets"
                    );
                    // The cursor key, or the tenants' secrets under the
                    // prefix the function is given, and nothing else.
                    let tenant_secrets = resources.len() == 1
                        && intrinsic(resources[0]).is_some_and(|(f, v)| {
                            f == "Sub"
                                && v.as_str().is_some_and(|arn| {
                                    arn.ends_with(":secret:${AWS::StackName}/tenants/*")
                                        && arn.starts_with("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:")
                                })
                        });
                    assert!(
                        (resources.len() == 1 && refers_to(resources[0], &secret))
                            || tenant_secrets,
                        "{policy}: GetSecretValue only on !Ref {secret} or this stack's tenants/* secrets"
                    );
                }
                "logs" => {
                    assert!(
                        ["logs:CreateLogStream", "logs:PutLogEvents"].contains(&a.as_str()),
                        "{policy}: {a}"
                    );
                    assert!(
                        resources.len() == 1 && arn_of(resources[0], &log_group),
                        "{policy}: logs only on !GetAtt {log_group}.Arn"
                    );
                }
                "ses" => assert!(
                    sends_email,
                    "{policy}: {a} granted, but the code sends no email yet"
                ),
                other => panic!("{policy}: unexpected service {other} ({a})"),
            }
        }
    }
}

// -------------------------------------------------------- function and API

#[test]
fn the_function_is_a_graviton_rust_lambda_behind_the_tenant_routes() {
    let t = template();
    let res = resources(&t);
    let (name, f) = function(&res);
    assert_eq!(
        f.get("Metadata").and_then(|m| str_of(m, "BuildMethod")),
        Some("rust-cargolambda")
    );
    let p = props(f, name);
    assert_eq!(str_of(p, "Runtime"), Some("provided.al2023"));
    assert_eq!(str_of(p, "Handler"), Some("bootstrap"));
    assert_eq!(
        p.get("Architectures")
            .and_then(Value::as_sequence)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
        Some(vec!["arm64"])
    );
    assert_eq!(
        p.get("LoggingConfig").and_then(|l| str_of(l, "LogFormat")),
        Some("JSON")
    );
    let timeout = p.get("Timeout").and_then(Value::as_u64).expect("Timeout");
    assert!(
        timeout < 29,
        "answer before API Gateway's 29 s integration timeout"
    );

    let events = p.get("Events").and_then(Value::as_mapping).expect("Events");
    let mut routes = BTreeSet::new();
    for (_, e) in events {
        assert_eq!(str_of(e, "Type"), Some("Api"), "REST API events");
        let ep = e.get("Properties").unwrap();
        let api = ep.get("RestApiId").expect("events name the API");
        let api = intrinsic(api).and_then(|(_, a)| a.as_str()).unwrap();
        assert_eq!(
            str_of(resource(&res, api), "Type"),
            Some("AWS::Serverless::Api")
        );
        routes.insert((
            str_of(ep, "Path").unwrap().to_owned(),
            str_of(ep, "Method").unwrap().to_ascii_uppercase(),
        ));
    }
    assert_eq!(
        routes,
        BTreeSet::from([
            ("/scim/v2/{tenant}".to_owned(), "ANY".to_owned()),
            ("/scim/v2/{tenant}/{proxy+}".to_owned(), "ANY".to_owned()),
        ])
    );
}
