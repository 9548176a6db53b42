//! `template.yaml` against the code it deploys: the table is the one the
//! DynamoDB store expects, the function gets every environment variable the
//! Lambda entry reads (and the template sets none it ignores), its role
//! grants exactly the DynamoDB actions the store calls (derived by reading
//! `src/store/dynamodb/`) and the Secrets Manager calls the code makes, SES
//! only from the sender while the code sends email, and the API routes the
//! admin API (AWS_IAM), the credential pages and the Tenant URLs the code
//! serves.
//!
//! Run: `cargo test --test template`.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

const TABLE: &str = "ScimTable";
const SECRET_ENV: &str = "CURSOR_KEY_SECRET_ARN";
/// `TENANT_SECRET_PREFIX`, as the template writes it.
const TENANT_PREFIX: &str = "${AWS::StackName}/tenants/";
const API: &str = "ScimApi";
const ADMIN_POLICY: &str = "AdminApiInvokePolicy";

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

/// The items of a list, some of which may be
/// `!If [Condition, item, !Ref AWS::NoValue]`: each with the condition it
/// exists under (`!Condition` for an else branch).
fn conditional_items(v: &Value) -> Vec<(Option<String>, &Value)> {
    let mut out = Vec::new();
    for item in values(v) {
        match intrinsic(item) {
            Some((f, arg)) if f == "If" => {
                let parts = arg.as_sequence().expect("!If [condition, then, else]");
                assert_eq!(parts.len(), 3, "!If [condition, then, else]");
                let cond = parts[0].as_str().expect("a condition name");
                for (branch, when) in [
                    (&parts[1], cond.to_owned()),
                    (&parts[2], format!("!{cond}")),
                ] {
                    if !refers_to(branch, "AWS::NoValue") {
                        out.push((Some(when), branch));
                    }
                }
            }
            _ => out.push((None, item)),
        }
    }
    out
}

/// `!Sub "…"` with this exact string?
fn sub_is(v: &Value, s: &str) -> bool {
    matches!(intrinsic(v), Some((f, arg)) if f == "Sub" && arg.as_str() == Some(s))
}

fn parameter<'a>(t: &'a Value, name: &str) -> &'a Value {
    t.get("Parameters")
        .and_then(|p| p.get(name))
        .unwrap_or_else(|| panic!("template has no parameter {name}"))
}

fn output<'a>(t: &'a Value, name: &str) -> &'a Value {
    t.get("Outputs")
        .and_then(|o| o.get(name))
        .unwrap_or_else(|| panic!("template has no output {name}"))
}

/// The SCIM function (API routes, admin API, credential pages).
const SCIM_FUNCTION: &str = "ScimFunction";
/// The change-event publisher (the same binary, `SCIM_FUNCTION=publisher`).
const PUBLISHER: &str = "PublisherFunction";

/// The `AWS::Serverless::Function`s: exactly the SCIM function and the
/// publisher.
fn functions(res: &BTreeMap<String, Value>) -> BTreeSet<&str> {
    let fns: BTreeSet<&str> = res
        .iter()
        .filter(|(_, r)| str_of(r, "Type") == Some("AWS::Serverless::Function"))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        fns,
        BTreeSet::from([SCIM_FUNCTION, PUBLISHER]),
        "expected exactly the SCIM function and the event publisher"
    );
    fns
}

/// The SCIM function.
fn function(res: &BTreeMap<String, Value>) -> (&str, &Value) {
    functions(res);
    (SCIM_FUNCTION, resource(res, SCIM_FUNCTION))
}

/// The event publisher.
fn publisher(res: &BTreeMap<String, Value>) -> (&str, &Value) {
    functions(res);
    (PUBLISHER, resource(res, PUBLISHER))
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
/// `lookup("X")` in the files that start the SCIM function's Lambda
/// runtime (`lambda_http::run`).
fn env_read_by_lambda_entry() -> BTreeSet<String> {
    env_read_by_files_calling("lambda_http::run(")
}

/// The same for the event publisher (`lambda_runtime::run`, src/publisher.rs).
fn env_read_by_publisher() -> BTreeSet<String> {
    env_read_by_files_calling("lambda_runtime::run(")
}

fn env_read_by_files_calling(entry: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut entries = 0;
    for path in rust_files(&root().join("src")) {
        let src = read(&path);
        if !src.contains(entry) {
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
        "no file in src/ calls {entry}..): where is the Lambda entry?"
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
    assert!(
        var("TENANT_SECRET_PREFIX").is_some_and(|v| sub_is(v, TENANT_PREFIX)),
        "TENANT_SECRET_PREFIX must be !Sub {TENANT_PREFIX} (the prefix the role's grant covers)"
    );
    // Credentials emails: the sender only when there is one (the role's SES
    // grant has the same condition), the link lifetime from its parameter.
    let sender = var("SENDER_EMAIL").and_then(intrinsic);
    assert!(
        sender.as_ref().is_some_and(|(f, arg)| f == "If"
            && arg.as_sequence().is_some_and(|a| a.len() == 3
                && a[0].as_str() == Some("HasSenderEmail")
                && refers_to(&a[1], "SenderEmail")
                && refers_to(&a[2], "AWS::NoValue"))),
        "SENDER_EMAIL must be !If [HasSenderEmail, !Ref SenderEmail, !Ref AWS::NoValue]"
    );
    assert!(
        var("REVEAL_TTL_SECS").is_some_and(|v| refers_to(v, "RevealLinkTtlSeconds")),
        "REVEAL_TTL_SECS must be !Ref RevealLinkTtlSeconds"
    );
    let ttl = parameter(&t, "RevealLinkTtlSeconds");
    assert_eq!(str_of(ttl, "Type"), Some("Number"));
    let num = |k: &str| ttl.get(k).and_then(Value::as_u64);
    assert_eq!(
        (num("Default"), num("MinValue"), num("MaxValue")),
        (Some(86_400), Some(300), Some(604_800)),
        "RevealLinkTtlSeconds: default a day, 5 minutes to 7 days"
    );

    // Audit records' retention, from its parameter (default: the code's).
    assert!(
        var("AUDIT_RETENTION_DAYS").is_some_and(|v| refers_to(v, "AuditRetentionDays")),
        "AUDIT_RETENTION_DAYS must be !Ref AuditRetentionDays"
    );
    let retention = parameter(&t, "AuditRetentionDays");
    assert_eq!(str_of(retention, "Type"), Some("Number"));
    assert_eq!(
        retention.get("Default").and_then(Value::as_i64),
        Some(scim_provisioning::audit::DEFAULT_RETENTION_DAYS),
        "AuditRetentionDays defaults to audit::DEFAULT_RETENTION_DAYS"
    );
    assert!(
        retention
            .get("MinValue")
            .and_then(Value::as_i64)
            .is_some_and(|m| m >= 1),
        "AuditRetentionDays: at least a day"
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

/// Variables the template sets that the Lambda entry itself does not read.
const SET_BUT_READ_ELSEWHERE: &[(&str, &str)] = &[(
    "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
    "read by lambda_http, not by our code",
)];

#[test]
fn every_variable_the_template_sets_is_read_by_the_lambda_entry() {
    let t = template();
    let res = resources(&t);
    let (name, f) = function(&res);
    let env = props(f, name)
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .expect("the function has Environment.Variables");
    let read = env_read_by_lambda_entry();
    let unread: Vec<_> = env
        .keys()
        .map(|k| k.as_str().unwrap())
        .filter(|n| !read.contains(*n))
        .filter(|n| !SET_BUT_READ_ELSEWHERE.iter().any(|(o, _)| o == n))
        .collect();
    assert!(
        unread.is_empty(),
        "template.yaml sets {unread:?}, which the Lambda entry never reads \
         (a setting nobody reads is a silent misconfiguration); the entry reads {read:?}"
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

/// One statement of the function's role: the policy it is in, the
/// template condition it exists under (a policy or statement wrapped in
/// `!If`), and the statement.
struct Grant {
    policy: String,
    condition: Option<String>,
    statement: Value,
}

/// Every statement of the function's role.
fn role_statements(res: &BTreeMap<String, Value>) -> Vec<Grant> {
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
    // No other policy resource may attach more to the role. A managed
    // policy for operators (AdminApiInvokePolicy) is fine while it is
    // attached to nothing in the template.
    for (n, r) in res {
        match str_of(r, "Type") {
            Some(ty @ "AWS::IAM::Policy") => {
                panic!("{n} ({ty}) may add to the function's role; put statements on the role")
            }
            Some("AWS::IAM::ManagedPolicy") => {
                for k in ["Roles", "Users", "Groups"] {
                    assert!(
                        props(r, n).get(k).is_none(),
                        "{n} attaches itself ({k}); it may add to the function's role: \
                         put the function's statements on its role, leave operators' policies unattached"
                    );
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (pcond, policy) in conditional_items(rp.get("Policies").expect("the role has Policies")) {
        let pname = str_of(policy, "PolicyName").unwrap_or("?").to_owned();
        let doc = policy.get("PolicyDocument").expect("PolicyDocument");
        for (scond, st) in conditional_items(doc.get("Statement").expect("Statement")) {
            assert!(
                pcond.is_none() || scond.is_none(),
                "{pname}: one !If per statement, on the policy or on the statement"
            );
            out.push(Grant {
                policy: pname.clone(),
                condition: pcond.clone().or(scond),
                statement: st.clone(),
            });
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
    for Grant {
        policy,
        statement: st,
        ..
    } in role_statements(&res)
    {
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

/// Secrets Manager client operations (`client.op()`); `tag_resource` and
/// `untag_resource` are left out, DynamoDB has them too.
const SECRETSMANAGER_OPS: &[&str] = &[
    "batch_get_secret_value",
    "cancel_rotate_secret",
    "create_secret",
    "delete_resource_policy",
    "delete_secret",
    "describe_secret",
    "get_random_password",
    "get_resource_policy",
    "get_secret_value",
    "list_secret_version_ids",
    "list_secrets",
    "put_resource_policy",
    "put_secret_value",
    "remove_regions_from_replication",
    "replicate_secret_to_regions",
    "restore_secret",
    "rotate_secret",
    "stop_replication_to_replica",
    "update_secret",
    "update_secret_version_stage",
    "validate_resource_policy",
];

/// `secretsmanager:*` actions for every Secrets Manager SDK call in `src/`
/// outside tests, with where it was seen.
fn secretsmanager_actions_in_code() -> BTreeMap<String, String> {
    let mut actions = BTreeMap::new();
    for path in rust_files(&root().join("src")) {
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        if file.ends_with("tests.rs") {
            continue;
        }
        let full = read(&path);
        let compact: String = without_test_module(&full)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for op in SECRETSMANAGER_OPS {
            if compact.contains(&format!(".{op}()")) {
                actions
                    .entry(format!("secretsmanager:{}", pascal(op)))
                    .or_insert(format!("{file}: .{op}()"));
            }
        }
    }
    actions
}

/// What the function may do with the tenants' secrets: create one for a
/// new tenant, put a new version to rotate it, read a version by id. Never
/// delete, list or describe.
const TENANT_SECRET_ACTIONS: &[&str] = &[
    "secretsmanager:CreateSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
];

#[test]
fn the_role_grants_only_this_stacks_secrets_logs_and_email_from_the_sender() {
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
    let tenant_secrets_arn = format!(
        "arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:{TENANT_PREFIX}*"
    );
    let ses_identities = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*";

    let mut cursor_key_grants = Vec::new();
    let mut tenant_grants = Vec::new();
    let mut ses_grants = Vec::new();
    for Grant {
        policy,
        condition,
        statement: st,
    } in role_statements(&res)
    {
        let actions = strings(st.get("Action").unwrap());
        let resources = values(st.get("Resource").unwrap());
        let services: BTreeSet<&str> = actions
            .iter()
            .map(|a| a.split(':').next().unwrap())
            .collect();
        assert_eq!(
            services.len(),
            1,
            "{policy}: one service per statement, got {actions:?}"
        );
        let only = |r: &dyn Fn(&Value) -> bool| resources.len() == 1 && r(resources[0]);
        match *services.first().unwrap() {
            "dynamodb" => {} // the test above
            "secretsmanager" => {
                assert!(
                    condition.is_none(),
                    "{policy}: secrets grants are unconditional"
                );
                assert!(
                    st.get("Condition").is_none(),
                    "{policy}: no IAM condition expected"
                );
                if only(&|r| refers_to(r, &secret)) {
                    cursor_key_grants.extend(actions);
                } else if only(&|r| sub_is(r, &tenant_secrets_arn)) {
                    tenant_grants.extend(actions);
                } else {
                    panic!(
                        "{policy}: Secrets Manager actions only on !Ref {secret} or \
                         !Sub {tenant_secrets_arn}, got {resources:?}"
                    );
                }
            }
            "logs" => {
                for a in &actions {
                    assert!(
                        ["logs:CreateLogStream", "logs:PutLogEvents"].contains(&a.as_str()),
                        "{policy}: {a}"
                    );
                }
                assert!(
                    only(&|r| arn_of(r, &log_group)),
                    "{policy}: logs only on !GetAtt {log_group}.Arn"
                );
            }
            "ses" => {
                assert_eq!(
                    actions,
                    ["ses:SendEmail"],
                    "{policy}: SES v1 SendEmail only (no SendRawEmail, no templates)"
                );
                assert_eq!(
                    condition.as_deref(),
                    Some("HasSenderEmail"),
                    "{policy}: the SES grant exists only with a SenderEmail (!If HasSenderEmail)"
                );
                assert!(
                    only(&|r| sub_is(r, ses_identities)),
                    "{policy}: ses:SendEmail on !Sub {ses_identities} (the identity may be the \
                     sender's domain), limited by ses:FromAddress"
                );
                let cond = st.get("Condition").and_then(Value::as_mapping);
                let from = cond
                    .filter(|c| c.len() == 1)
                    .and_then(|c| c.get("StringEquals"))
                    .and_then(Value::as_mapping)
                    .filter(|c| c.len() == 1)
                    .and_then(|c| c.get("ses:FromAddress"));
                assert!(
                    from.is_some_and(|v| refers_to(v, "SenderEmail")),
                    "{policy}: Condition must be exactly StringEquals ses:FromAddress: !Ref SenderEmail"
                );
                ses_grants.push(policy.clone());
            }
            other => panic!("{policy}: unexpected service {other} ({actions:?})"),
        }
    }

    // The condition the SES grant hangs on means what it says.
    let has_sender = t
        .get("Conditions")
        .and_then(|c| c.get("HasSenderEmail"))
        .and_then(intrinsic)
        .expect("Conditions.HasSenderEmail");
    let not_empty = has_sender.0 == "Not"
        && has_sender.1.as_sequence().is_some_and(|n| {
            n.len() == 1
                && intrinsic(&n[0]).is_some_and(|(f, eq)| {
                    f == "Equals"
                        && eq.as_sequence().is_some_and(|e| {
                            e.len() == 2
                                && refers_to(&e[0], "SenderEmail")
                                && e[1].as_str() == Some("")
                        })
                })
        });
    assert!(
        not_empty,
        "HasSenderEmail must be !Not [!Equals [!Ref SenderEmail, \"\"]]"
    );

    assert_eq!(
        cursor_key_grants,
        ["secretsmanager:GetSecretValue"],
        "the cursor key is only read"
    );
    let tenant: BTreeSet<&str> = tenant_grants.iter().map(String::as_str).collect();
    assert!(
        tenant == TENANT_SECRET_ACTIONS.iter().copied().collect()
            && tenant.len() == tenant_grants.len(),
        "on the tenants' secrets the role grants exactly {TENANT_SECRET_ACTIONS:?} (once each), got {tenant_grants:?}"
    );
    // And those are the Secrets Manager calls the code makes.
    let code = secretsmanager_actions_in_code();
    let granted: BTreeSet<&str> = tenant
        .iter()
        .copied()
        .chain(["secretsmanager:GetSecretValue"])
        .collect();
    let called: BTreeSet<&str> = code.keys().map(String::as_str).collect();
    let missing: Vec<_> = called
        .difference(&granted)
        .map(|a| format!("{a} ({})", code[*a]))
        .collect();
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "the code calls Secrets Manager actions the role does not grant: {missing:?}; \
         the role grants ones the code never calls: {unused:?}"
    );

    // SES: granted exactly when the code sends email.
    let sends_email = rust_files(&root().join("src")).iter().any(|p| {
        let s = read(p);
        without_test_module(&s).contains("aws_sdk_ses")
    });
    assert_eq!(
        ses_grants.len(),
        1,
        "expected one ses:SendEmail statement, got {ses_grants:?}"
    );
    assert!(
        sends_email,
        "template.yaml grants ses:SendEmail ({ses_grants:?}), but no file in src/ uses aws_sdk_ses"
    );
}

// -------------------------------------------------------- function and API

/// Each route the API sends to the function, with the authorizer its event
/// asks for (`None`: API Gateway does no auth, the function does).
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    // Bearer tokens, checked by the function.
    ("/scim/v2/{tenant}", "ANY", None),
    ("/scim/v2/{tenant}/{proxy+}", "ANY", None),
    // The admin API: SigV4, checked by API Gateway (and the caller's ARN
    // required again by the function).
    ("/admin/{proxy+}", "ANY", Some("AWS_IAM")),
    // The one-time "Get Secret Token" pages: the reference is the secret.
    ("/credentials/{ref}", "ANY", None),
];

#[test]
fn the_function_is_a_graviton_rust_lambda_behind_the_scim_admin_and_credential_routes() {
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
    for (ename, e) in events {
        let ename = ename.as_str().unwrap();
        assert_eq!(str_of(e, "Type"), Some("Api"), "REST API events");
        let ep = e.get("Properties").unwrap();
        let api = ep.get("RestApiId").expect("events name the API");
        let api = intrinsic(api).and_then(|(_, a)| a.as_str()).unwrap();
        assert_eq!(api, API, "{ename}: every route on {API}");
        assert_eq!(
            str_of(resource(&res, api), "Type"),
            Some("AWS::Serverless::Api")
        );
        let auth = ep.get("Auth");
        let authorizer = auth
            .and_then(|a| str_of(a, "Authorizer"))
            .filter(|a| *a != "NONE");
        if authorizer == Some("AWS_IAM") {
            // SAM's default for AWS_IAM, CALLER_CREDENTIALS, makes API Gateway
            // invoke the function with the caller's credentials: every caller
            // would need lambda:InvokeFunction as well.
            assert_eq!(
                auth.and_then(|a| str_of(a, "InvokeRole")),
                Some("NONE"),
                "{ename}: AWS_IAM with InvokeRole: NONE (invoke through the function's resource policy)"
            );
        }
        assert!(
            auth.is_none_or(
                |a| a.get("ApiKeyRequired").is_none() && a.get("ResourcePolicy").is_none()
            ),
            "{ename}: unexpected Auth settings {auth:?}"
        );
        routes.insert((
            str_of(ep, "Path").unwrap().to_owned(),
            str_of(ep, "Method").unwrap().to_ascii_uppercase(),
            authorizer.map(str::to_owned),
        ));
    }
    let expected: BTreeSet<_> = ROUTES
        .iter()
        .map(|(p, m, a)| ((*p).to_owned(), (*m).to_owned(), a.map(str::to_owned)))
        .collect();
    assert_eq!(
        routes, expected,
        "(path, method, authorizer) of the function's events"
    );

    // No API-wide authorizer: it would apply to the SCIM routes (which
    // carry bearer tokens, not signatures) and the public credential pages.
    let api = props(resource(&res, API), API);
    assert!(
        api.get("Auth").is_none_or(
            |a| a.get("DefaultAuthorizer").is_none() && a.get("ApiKeyRequired").is_none()
        ),
        "{API}: no DefaultAuthorizer / ApiKeyRequired; auth is per event"
    );
    assert!(
        api.get("StageName").is_some_and(|s| refers_to(s, "Stage")),
        "{API}: StageName is !Ref Stage (the outputs and the invoke policy build ARNs and URLs from it)"
    );
}

/// The route prefixes the template sends to the function appear in the
/// router, so neither side serves or routes something the other does not.
#[test]
fn the_code_serves_the_prefixes_the_api_routes_to_it() {
    let src: String = rust_files(&root().join("src"))
        .iter()
        .map(|p| without_test_module(&read(p)).to_owned())
        .collect();
    for (prefix, route) in [
        ("\"/scim/v2", "/scim/v2/{tenant}"),
        ("\"/admin/v1", "/admin/{proxy+}"),
        ("\"/credentials", "/credentials/{ref}"),
    ] {
        assert!(
            ROUTES.iter().any(|(p, _, _)| *p == route),
            "ROUTES lists {route}"
        );
        assert!(
            src.contains(prefix),
            "template.yaml routes {route} to the function, but no string literal in src/ starts with {}",
            &prefix[1..]
        );
    }
}

#[test]
fn the_admin_api_is_named_in_the_outputs_with_a_policy_to_call_it() {
    let t = template();
    let res = resources(&t);

    let endpoint = output(&t, "AdminEndpoint");
    let url = "https://${ScimApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}";
    assert!(
        endpoint.get("Value").is_some_and(|v| sub_is(v, url)),
        "AdminEndpoint is !Sub {url} (the CLI appends /admin/v1/...)"
    );
    let desc = str_of(endpoint, "Description").unwrap_or_default();
    for word in ["SigV4", "execute-api", "execute-api:Invoke", "/admin/*"] {
        assert!(
            desc.contains(word),
            "AdminEndpoint's description says {word}: {desc}"
        );
    }

    // The managed policy operators attach to call it: exactly Invoke on the
    // admin routes of this stage, attached to nothing here.
    let policy = resource(&res, ADMIN_POLICY);
    assert_eq!(str_of(policy, "Type"), Some("AWS::IAM::ManagedPolicy"));
    let pp = props(policy, ADMIN_POLICY);
    for k in ["Roles", "Users", "Groups"] {
        assert!(
            pp.get(k).is_none(),
            "{ADMIN_POLICY} is attached by operators, not by the stack ({k})"
        );
    }
    let statements = values(
        pp.get("PolicyDocument")
            .and_then(|d| d.get("Statement"))
            .expect("PolicyDocument.Statement"),
    );
    assert_eq!(statements.len(), 1, "{ADMIN_POLICY}: one statement");
    let st = statements[0];
    assert_eq!(str_of(st, "Effect"), Some("Allow"));
    assert_eq!(strings(st.get("Action").unwrap()), ["execute-api:Invoke"]);
    let admin_arn = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${ScimApi}/${Stage}/*/admin/*";
    let resources = values(st.get("Resource").unwrap());
    assert!(
        resources.len() == 1 && sub_is(resources[0], admin_arn),
        "{ADMIN_POLICY}: execute-api:Invoke only on !Sub {admin_arn}"
    );
    assert!(
        ROUTES
            .iter()
            .any(|(p, _, a)| p.starts_with("/admin/") && *a == Some("AWS_IAM")),
        "the policy's /admin/* is the AWS_IAM route"
    );
    assert!(
        output(&t, "AdminApiInvokePolicyArn")
            .get("Value")
            .is_some_and(|v| refers_to(v, ADMIN_POLICY)),
        "AdminApiInvokePolicyArn is !Ref {ADMIN_POLICY}"
    );

    // The `token` command is gone; no output may still tell people to run it.
    let outputs = serde_norway::to_string(t.get("Outputs").unwrap()).unwrap();
    assert!(
        !outputs.contains("scim-provisioning token"),
        "an output still names the removed `token` command"
    );
}

/// Gateway responses the admin route's IAM auth produces (and, for
/// MISSING_AUTHENTICATION_TOKEN, any unknown path).
const IAM_GATEWAY_RESPONSES: &[&str] = &[
    "MISSING_AUTHENTICATION_TOKEN",
    "ACCESS_DENIED",
    "INVALID_SIGNATURE",
    "EXPIRED_TOKEN",
    "UNAUTHORIZED",
];

#[test]
fn gateway_errors_are_json_and_iam_failures_are_not_scim_errors() {
    let t = template();
    let res = resources(&t);
    let responses = props(resource(&res, API), API)
        .get("GatewayResponses")
        .and_then(Value::as_mapping)
        .expect("GatewayResponses");
    for (kind, r) in responses {
        let kind = kind.as_str().unwrap();
        let body = r
            .get("ResponseTemplates")
            .and_then(|t| str_of(t, "application/json"))
            .unwrap_or_else(|| panic!("{kind}: an application/json template"));
        // Templates are plain substitution; messageString comes quoted.
        let json: serde_json::Value =
            serde_json::from_str(&body.replace("$context.error.messageString", "\"message\""))
                .unwrap_or_else(|e| panic!("{kind}: the body is not JSON ({e}): {body}"));
        let content_type = r
            .get("ResponseParameters")
            .and_then(|p| p.get("Headers"))
            .and_then(|h| str_of(h, "Content-Type"));
        let status = str_of(r, "StatusCode").unwrap_or_else(|| panic!("{kind}: StatusCode"));
        if IAM_GATEWAY_RESPONSES.contains(&kind) {
            assert!(
                json.get("schemas").is_none()
                    && json.get("error").is_some()
                    && json.get("detail").is_some(),
                "{kind}: the admin routes' auth failures answer {{\"error\",\"detail\"}}, not a SCIM error: {body}"
            );
            assert_eq!(content_type, Some("'application/json'"), "{kind}");
            assert!(status.starts_with('4'), "{kind}: {status}");
        } else if json.get("schemas").is_some() {
            // A SCIM error any route may get: nothing in it may be SCIM-only.
            assert_eq!(content_type, Some("'application/scim+json'"), "{kind}");
            assert_eq!(
                json.get("status").and_then(|s| s.as_str()),
                Some(status),
                "{kind}"
            );
            assert!(
                !body.contains("/scim/v2") && !body.contains("Tenant URL"),
                "{kind} applies to every route, including /admin and /credentials: {body}"
            );
        }
    }
    assert!(
        responses.get("MISSING_AUTHENTICATION_TOKEN").is_some(),
        "MISSING_AUTHENTICATION_TOKEN (unknown path or unsigned admin call) is customised"
    );
}

// ----------------------------------------------------------- change events

const BUS: &str = "ScimEventBus";
const DLQ: &str = "EventsDeadLetterQueue";

fn env_of<'a>(f: &'a Value, name: &str) -> &'a serde_norway::Mapping {
    props(f, name)
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{name} has Environment.Variables"))
}

#[test]
fn the_table_streams_new_images() {
    let t = template();
    let res = resources(&t);
    let spec = props(resource(&res, TABLE), TABLE)
        .get("StreamSpecification")
        .expect("ScimTable has a StreamSpecification (the publisher reads its stream)");
    assert_eq!(
        str_of(spec, "StreamViewType"),
        Some("NEW_IMAGE"),
        "the publisher reads the audit record from the new image; nothing needs old images"
    );
}

#[test]
fn the_publisher_is_the_same_binary_started_as_the_publisher() {
    use scim_provisioning::publisher;
    let t = template();
    let res = resources(&t);
    let (scim_name, scim) = function(&res);
    let (name, f) = publisher(&res);

    // Same build, same runtime: one bootstrap, two entries.
    assert_eq!(
        f.get("Metadata"),
        scim.get("Metadata"),
        "same cargo-lambda build"
    );
    assert_eq!(
        f.get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| str_of(b, "Binary")),
        Some("scim-provisioning")
    );
    let (p, sp) = (props(f, name), props(scim, scim_name));
    for k in ["CodeUri", "Handler", "Runtime", "Architectures"] {
        assert_eq!(p.get(k), sp.get(k), "{name}.{k} is the SCIM function's");
    }
    assert_eq!(str_of(p, "Runtime"), Some("provided.al2023"));
    assert_eq!(
        p.get("LoggingConfig").and_then(|l| str_of(l, "LogFormat")),
        Some("JSON")
    );
    assert!(
        p.get("Policies").is_none(),
        "{name}: explicit role, no SAM policy templates"
    );

    // Selected by SCIM_FUNCTION=publisher, which main.rs asks the module.
    let env = env_of(f, name);
    assert_eq!(
        env.get(publisher::FUNCTION_ENV).and_then(Value::as_str),
        Some(publisher::FUNCTION_NAME),
        "{name} sets {}={}",
        publisher::FUNCTION_ENV,
        publisher::FUNCTION_NAME
    );
    assert!(
        env_of(scim, scim_name)
            .get(publisher::FUNCTION_ENV)
            .is_none(),
        "the SCIM function must not select the publisher"
    );
    let main = read(&root().join("src/main.rs"));
    assert!(
        main.contains("publisher::selected()") && main.contains("publisher::run()"),
        "src/main.rs starts the publisher when publisher::selected()"
    );
    assert!(
        read(&root().join("src/publisher.rs"))
            .contains(&format!("var(\"{}\")", publisher::FUNCTION_ENV)),
        "publisher::selected reads {}",
        publisher::FUNCTION_ENV
    );

    // The bus it puts events on is this stack's.
    assert!(
        env.get("EVENT_BUS_NAME").is_some_and(|v| refers_to(v, BUS)),
        "EVENT_BUS_NAME is !Ref {BUS}"
    );
    assert_eq!(
        str_of(resource(&res, BUS), "Type"),
        Some("AWS::Events::EventBus")
    );
    assert!(
        env.get("EVENT_SOURCE")
            .and_then(intrinsic)
            .is_some_and(|(f, a)| f == "Sub"
                && a.as_str()
                    .is_some_and(|s| s.starts_with(publisher::DEFAULT_EVENT_SOURCE))),
        "EVENT_SOURCE names the deployment under {}",
        publisher::DEFAULT_EVENT_SOURCE
    );

    // Exactly what the code reads, both ways.
    let read = env_read_by_publisher();
    let set: BTreeSet<String> = env.keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    for v in ["EVENT_BUS_NAME", "EVENT_SOURCE", publisher::FUNCTION_ENV] {
        assert!(
            read.contains(v),
            "src/publisher.rs reads {v} (found {read:?})"
        );
    }
    let missing: Vec<_> = read
        .iter()
        .filter(|n| !set.contains(*n) && !n.starts_with("AWS_"))
        .collect();
    let unread: Vec<_> = set.iter().filter(|n| !read.contains(*n)).collect();
    assert!(
        missing.is_empty() && unread.is_empty(),
        "the publisher reads {missing:?}, which {name} does not set; {name} sets {unread:?}, which it never reads"
    );
}

#[test]
fn the_publisher_reads_the_stream_as_the_code_expects() {
    use scim_provisioning::publisher;
    let t = template();
    let res = resources(&t);
    let (name, f) = publisher(&res);
    let events = props(f, name)
        .get("Events")
        .and_then(Value::as_mapping)
        .expect("Events");
    assert_eq!(
        events.len(),
        1,
        "{name}: one event source, the table's stream"
    );
    let (_, e) = events.iter().next().unwrap();
    assert_eq!(str_of(e, "Type"), Some("DynamoDB"));
    let ep = e.get("Properties").expect("Properties");
    assert!(
        ep.get("Stream")
            .and_then(intrinsic)
            .is_some_and(|(f, a)| f == "GetAtt"
                && match a {
                    Value::String(s) => s == "ScimTable.StreamArn",
                    Value::Sequence(s) => {
                        s.len() == 2
                            && s[0].as_str() == Some(TABLE)
                            && s[1].as_str() == Some("StreamArn")
                    }
                    _ => false,
                }),
        "Stream is !GetAtt {TABLE}.StreamArn"
    );
    let num = |k: &str| ep.get(k).and_then(Value::as_i64);
    assert_eq!(str_of(ep, "StartingPosition"), Some("TRIM_HORIZON"));
    assert_eq!(num("BatchSize"), Some(100));
    assert_eq!(num("MaximumBatchingWindowInSeconds"), Some(1));
    assert_eq!(num("MaximumRetryAttempts"), Some(10));
    assert_eq!(num("MaximumRecordAgeInSeconds"), Some(86_400));
    assert_eq!(
        ep.get("BisectBatchOnFunctionError")
            .and_then(Value::as_bool),
        Some(true)
    );
    // publish() answers partial batch failures; without this setting
    // Lambda would ignore them and checkpoint the whole batch.
    assert_eq!(
        ep.get("FunctionResponseTypes")
            .map(strings)
            .unwrap_or_default(),
        ["ReportBatchItemFailures"]
    );
    assert!(
        ep.get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|o| o.get("Destination"))
            .is_some_and(|d| arn_of(d, DLQ)),
        "failed batches go to !GetAtt {DLQ}.Arn"
    );
    assert!(
        ep.get("ParallelizationFactor")
            .and_then(Value::as_i64)
            .is_none_or(|p| p == 1),
        "one batch per shard at a time keeps the shard's order"
    );

    // The filter lets through exactly what publish() publishes.
    let filters = values(
        ep.get("FilterCriteria")
            .and_then(|c| c.get("Filters"))
            .expect("FilterCriteria.Filters"),
    );
    assert_eq!(filters.len(), 1, "one filter");
    let pattern: serde_json::Value =
        serde_json::from_str(str_of(filters[0], "Pattern").expect("Pattern")).expect("JSON");
    let mut image = serde_json::Map::new();
    image.insert(
        publisher::AUDIT_KIND_ATTR.to_owned(),
        serde_json::json!({"S": [publisher::AUDIT_ITEM_KIND]}),
    );
    assert_eq!(
        pattern,
        serde_json::json!({
            "eventName": [publisher::INSERT],
            "dynamodb": {"NewImage": image},
        }),
        "the filter pattern matches the constants of src/publisher.rs"
    );
    // And those are the attribute and value the store writes.
    let keys = read(&root().join("src/store/dynamodb/keys.rs"));
    assert!(
        keys.contains(&format!(
            "const KIND: &str = \"{}\"",
            publisher::AUDIT_KIND_ATTR
        )),
        "src/store/dynamodb/keys.rs names the kind attribute {}",
        publisher::AUDIT_KIND_ATTR
    );
}

/// The publisher role's statements, by service.
fn publisher_statements(res: &BTreeMap<String, Value>) -> Vec<(String, Value)> {
    let (name, f) = publisher(res);
    let role_ref = props(f, name)
        .get("Role")
        .expect("the publisher names its Role");
    let (role_name, role) = res
        .iter()
        .find(|(n, _)| arn_of(role_ref, n))
        .expect("Role is !GetAtt <role in this template>.Arn");
    let (_, scim) = function(res);
    assert!(
        !arn_of(props(scim, SCIM_FUNCTION).get("Role").unwrap(), role_name),
        "the publisher has a role of its own"
    );
    assert_eq!(str_of(role, "Type"), Some("AWS::IAM::Role"));
    let rp = props(role, role_name);
    assert!(rp.get("ManagedPolicyArns").is_none(), "no managed policies");
    let mut out = Vec::new();
    for policy in values(rp.get("Policies").expect("Policies")) {
        let pname = str_of(policy, "PolicyName").unwrap().to_owned();
        let doc = policy.get("PolicyDocument").unwrap();
        for st in values(doc.get("Statement").unwrap()) {
            out.push((pname.clone(), st.clone()));
        }
    }
    out
}

#[test]
fn the_publisher_role_is_least_privilege() {
    let t = template();
    let res = resources(&t);
    let (name, f) = publisher(&res);
    let log_group = props(f, name)
        .get("LoggingConfig")
        .and_then(|l| l.get("LogGroup"))
        .and_then(intrinsic)
        .and_then(|(_, a)| a.as_str())
        .expect("LoggingConfig.LogGroup is !Ref of its log group")
        .to_owned();
    let (_, scim) = function(&res);
    let scim_logs = props(scim, SCIM_FUNCTION)
        .get("LoggingConfig")
        .and_then(|l| l.get("LogGroup"))
        .and_then(intrinsic)
        .and_then(|(_, a)| a.as_str().map(str::to_owned));
    assert_ne!(Some(log_group.clone()), scim_logs, "a log group of its own");

    let stream_arn = |v: &Value| {
        intrinsic(v).is_some_and(|(f, a)| {
            f == "GetAtt"
                && match a {
                    Value::String(s) => s == "ScimTable.StreamArn",
                    Value::Sequence(s) => {
                        s.len() == 2
                            && s[0].as_str() == Some(TABLE)
                            && s[1].as_str() == Some("StreamArn")
                    }
                    _ => false,
                }
        })
    };
    let mut granted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let statements = publisher_statements(&res);
    for (policy, st) in &statements {
        assert_eq!(str_of(st, "Effect"), Some("Allow"), "{policy}");
        assert!(
            st.get("Condition").is_none(),
            "{policy}: no conditions expected"
        );
        let actions = strings(st.get("Action").unwrap());
        let resources = values(st.get("Resource").unwrap());
        assert_eq!(resources.len(), 1, "{policy}: one resource per statement");
        let r = resources[0];
        let services: BTreeSet<&str> = actions
            .iter()
            .map(|a| a.split(':').next().unwrap())
            .collect();
        assert_eq!(services.len(), 1, "{policy}: one service per statement");
        for a in &actions {
            assert!(!a.contains('*'), "{policy}: wildcard action {a}");
        }
        let service = *services.first().unwrap();
        match service {
            "logs" => assert!(
                arn_of(r, &log_group),
                "{policy}: logs only on its log group"
            ),
            "dynamodb" => assert!(
                stream_arn(r),
                "{policy}: DynamoDB only on !GetAtt {TABLE}.StreamArn (never the table)"
            ),
            "events" => assert!(arn_of(r, BUS), "{policy}: events only on !GetAtt {BUS}.Arn"),
            "sqs" => assert!(arn_of(r, DLQ), "{policy}: sqs only on !GetAtt {DLQ}.Arn"),
            other => panic!("{policy}: unexpected service {other}"),
        }
        granted
            .entry(match service {
                "logs" => "logs",
                "dynamodb" => "dynamodb",
                "events" => "events",
                _ => "sqs",
            })
            .or_default()
            .extend(actions);
    }
    let set = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<BTreeSet<_>>();
    let expected = BTreeMap::from([
        ("logs", set(&["logs:CreateLogStream", "logs:PutLogEvents"])),
        (
            "dynamodb",
            set(&[
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ]),
        ),
        ("events", set(&["events:PutEvents"])),
        ("sqs", set(&["sqs:SendMessage"])),
    ]);
    assert_eq!(granted, expected, "the publisher role grants exactly these");

    // And the code calls exactly PutEvents on EventBridge.
    let src = read(&root().join("src/publisher.rs"));
    let compact: String = without_test_module(&src)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        compact.contains(".put_events()"),
        "src/publisher.rs calls PutEvents"
    );
    let calls: Vec<&str> = compact
        .match_indices("client.")
        .filter_map(|(i, _)| compact[i + 7..].split('(').next())
        .filter(|op| op.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .filter(|op| !["get_or_init"].contains(op))
        .collect();
    assert!(
        calls.iter().all(|op| *op == "put_events"),
        "src/publisher.rs calls {calls:?} on clients; the role grants events:PutEvents only"
    );
}

#[test]
fn event_delivery_failures_are_kept_and_alarmed() {
    let t = template();
    let res = resources(&t);
    let dlq = resource(&res, DLQ);
    assert_eq!(str_of(dlq, "Type"), Some("AWS::SQS::Queue"));
    let qp = props(dlq, DLQ);
    assert!(
        qp.get("SqsManagedSseEnabled").and_then(Value::as_bool) == Some(true)
            || qp.get("KmsMasterKeyId").is_some(),
        "{DLQ} is encrypted"
    );
    assert!(
        qp.get("MessageRetentionPeriod")
            .and_then(Value::as_u64)
            .is_some_and(|s| s >= 4 * 86_400),
        "{DLQ} keeps failed batches for days"
    );

    let alarm_on = |namespace: &str, metric: &str, dim: &dyn Fn(&Value) -> bool| {
        res.iter()
            .filter(|(_, r)| str_of(r, "Type") == Some("AWS::CloudWatch::Alarm"))
            .find(|(n, r)| {
                let p = props(r, n);
                str_of(p, "Namespace") == Some(namespace)
                    && str_of(p, "MetricName") == Some(metric)
                    && p.get("Dimensions")
                        .map(values)
                        .unwrap_or_default()
                        .iter()
                        .any(|d| d.get("Value").is_some_and(dim))
            })
            .map(|(n, r)| (n.clone(), props(r, n).clone()))
            .unwrap_or_else(|| panic!("an alarm on {namespace} {metric}"))
    };
    let dlq_name = |v: &Value| {
        intrinsic(v).is_some_and(|(f, a)| {
            f == "GetAtt"
                && match a {
                    Value::String(s) => s == &format!("{DLQ}.QueueName"),
                    Value::Sequence(s) => {
                        s.len() == 2
                            && s[0].as_str() == Some(DLQ)
                            && s[1].as_str() == Some("QueueName")
                    }
                    _ => false,
                }
        })
    };
    let alarms = [
        alarm_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", &dlq_name),
        alarm_on("AWS/Lambda", "Errors", &|v| refers_to(v, PUBLISHER)),
        alarm_on("AWS/Lambda", "IteratorAge", &|v| refers_to(v, PUBLISHER)),
    ];
    let (dlq_alarm, p) = &alarms[0];
    assert!(
        p.get("Threshold").and_then(Value::as_f64) == Some(0.0)
            && str_of(p, "ComparisonOperator") == Some("GreaterThanThreshold"),
        "{dlq_alarm}: any message in {DLQ} alarms"
    );
    for (n, p) in &alarms {
        assert!(
            p.get("AlarmActions")
                .map(values)
                .is_some_and(|a| a.iter().any(|a| refers_to(a, "AlarmTopic"))),
            "{n} notifies AlarmTopic"
        );
        assert_eq!(str_of(p, "TreatMissingData"), Some("notBreaching"), "{n}");
    }
}

#[test]
fn the_bus_is_named_in_the_outputs() {
    let t = template();
    assert!(
        output(&t, "EventBusName")
            .get("Value")
            .is_some_and(|v| refers_to(v, BUS)),
        "EventBusName is !Ref {BUS}"
    );
    assert!(
        output(&t, "EventBusArn")
            .get("Value")
            .is_some_and(|v| arn_of(v, BUS)),
        "EventBusArn is !GetAtt {BUS}.Arn"
    );
}
