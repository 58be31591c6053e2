//! Built-in and schema-checked user attributes, configuration, and the
//! guided-I/O listing.

mod common;

use cdo::{Error, Pool, PoolConfig, Priority, UnknownAttributes, Value};
use std::sync::Arc;

#[test]
fn user_attributes_are_typed_by_the_schema() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("typed").unwrap();
    assert!(p.set("app.step", 7i64).unwrap(), "int coerced to uint");
    assert!(p.set("app.t", 2u64).unwrap());
    assert!(p.set("app.when", "2024-05-01T00:00:00Z").unwrap());
    p.set("app.tags", vec![Value::from("a"), Value::from("b")])
        .unwrap();
    let user = &p.attributes().user;
    assert_eq!(user["app.step"], Value::UInt(7));
    assert_eq!(user["app.t"], Value::Float(2.0));
    assert!(matches!(user["app.when"], Value::Timestamp(_)));
    for (key, v) in [
        ("app.step", Value::Int(-1)),
        ("app.ok", Value::from("yes")),
        ("app.delta", Value::Float(0.5)),
        ("app.tags", Value::List(vec![Value::Bool(true)])),
        ("size", Value::from("big")),
        ("persist", Value::UInt(1)),
    ] {
        let before = p.attributes().clone();
        assert!(
            matches!(p.set(key, v), Err(Error::TypeMismatch { .. })),
            "{key}"
        );
        assert_eq!(p.attributes(), &before);
    }
    assert!(matches!(
        p.set("app.unknown", 1i64),
        Err(Error::UnknownAttribute { .. })
    ));
    assert!(matches!(
        p.set("version", 1u64),
        Err(Error::ReadOnlyAttribute { .. })
    ));
    p.seal().unwrap();
    assert!(matches!(
        p.set("app.t", 1.0),
        Err(Error::InvalidState { .. })
    ));
}

#[test]
fn required_user_attributes_are_checked_at_the_seal() {
    let env = common::env();
    let mut p = env.pool.declare("req").unwrap();
    p.set("app.label", "x").unwrap();
    match p.seal() {
        Err(Error::MissingAttribute { key, .. }) => assert_eq!(key, "app.step"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.state(), cdo::State::Declared);
    p.set("app.step", 1u64).unwrap();
    p.seal().unwrap();
}

#[test]
fn unknown_attributes_can_be_dropped_by_configuration() {
    let env = common::env_with(PoolConfig {
        unknown_attributes: UnknownAttributes::Drop,
        ..PoolConfig::default()
    });
    let mut p = env.pool.declare("lenient").unwrap();
    assert!(!p.set("other.thing", 1i64).unwrap());
    assert!(!p.set("app.nope", 1i64).unwrap());
    assert!(p.attributes().user.is_empty());
    // Known keys are still typed.
    assert!(p.set("app.step", "x").is_err());
}

#[test]
fn configuration_files_name_schema_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), common::APP_SCHEMA).unwrap();
    let config_path = dir.path().join("pool.yaml");
    std::fs::write(
        &config_path,
        "duplicates: version\nunknown_attributes: drop\nschemas: [app.yaml]\n",
    )
    .unwrap();
    let config = PoolConfig::from_file(&config_path).unwrap();
    assert_eq!(config.duplicates, cdo::DuplicateOffers::Version);
    let (mamba, _tmp) = common::mamba();
    let pool = Pool::new(Arc::clone(&mamba), config).unwrap();
    assert!(pool.schema().spec("app.step").unwrap().required);

    assert!(matches!(
        PoolConfig::from_yaml("duplicates: sometimes\n"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        PoolConfig::from_yaml("surprise: 1\n"),
        Err(Error::Config(_))
    ));
    let faults = PoolConfig::from_yaml("policy: best-effort\nack_timeout_ms: 250\n").unwrap();
    assert_eq!(faults.policy, cdo::engine::FaultPolicy::BestEffort);
    assert_eq!(faults.ack_timeout, std::time::Duration::from_millis(250));
    let defaults = PoolConfig::from_yaml("{}").unwrap();
    assert_eq!(defaults.policy, cdo::engine::FaultPolicy::FailFast);
    assert_eq!(defaults.ack_timeout, cdo::engine::DEFAULT_ACK_TIMEOUT);
    assert!(matches!(
        PoolConfig::from_yaml("policy: sometimes\n"),
        Err(Error::Config(_))
    ));
    let missing = PoolConfig {
        schemas: vec![dir.path().join("absent.yaml")],
        ..PoolConfig::default()
    };
    assert!(matches!(
        Pool::new(mamba, missing),
        Err(Error::Schema { .. })
    ));
}

#[test]
fn offers_are_listed_output_first_for_guided_io() {
    let env = common::env();
    let pool = &env.pool;
    let mut handles = Vec::new();
    for (name, prio) in [
        ("ckpt/1", Priority::Checkpoint),
        ("out/b", Priority::Output),
        ("misc", Priority::Normal),
        ("out/a", Priority::Output),
    ] {
        let mut p = pool.declare(name).unwrap();
        p.set_priority(prio).unwrap();
        p.set_persist(true).unwrap();
        p.write(name.as_bytes()).unwrap();
        p.seal().unwrap();
        p.offer().unwrap();
        handles.push(p);
    }
    let names: Vec<String> = pool
        .offers("persist == true")
        .unwrap()
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(names, ["out/a", "out/b", "misc", "ckpt/1"]);
    let out = pool.offers("priority == 'output'").unwrap();
    assert_eq!(out[0].data.as_slice().unwrap(), b"out/a");
    assert!(pool.offers("name ~ '['").is_err());
}

#[test]
fn public_types_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<cdo::Name<'static>>();
    send_sync::<cdo::Data>();
    send::<cdo::Cdo<'static>>();
    send::<cdo::Buffer>();
    send::<cdo::Subscription>();
    send::<cdo::Event>();
    send::<cdo::Member<'static>>();
    send::<cdo::Record>();
    send_sync::<cdo::Error>();
}
