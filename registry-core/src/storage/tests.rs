use super::*;

fn stored_version(db: &Db) -> Option<u64> {
    db.read(|txn| Ok(txn.open_table(META)?.get(SCHEMA_VERSION_KEY)?.map(|v| v.value()))).expect("read meta")
}

#[test]
fn open_creates_the_directory_and_records_the_format_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    let db = Db::open(&data_dir).expect("open");
    assert_eq!(db.path(), data_dir.join(DB_FILE_NAME));
    assert_eq!(stored_version(&db), Some(SCHEMA_VERSION));
    drop(db);
    let db = Db::open(&data_dir).expect("reopen");
    assert_eq!(stored_version(&db), Some(SCHEMA_VERSION));
}

#[test]
fn open_refuses_a_file_written_by_a_newer_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.write(|txn| {
        txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)?;
        Ok(())
    })
    .expect("bump version");
    drop(db);

    let err = Db::open(dir.path()).expect_err("newer format must be refused");
    let StorageError::NewerFormat { found, supported, .. } = err else {
        panic!("expected NewerFormat, got {err:?}");
    };
    assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
}

#[test]
fn a_second_handle_on_an_open_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _db = Db::open(dir.path()).expect("open");
    let err = Db::open(dir.path()).expect_err("the file is locked");
    assert!(matches!(err, StorageError::Open { .. }), "{err:?}");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let res: Result<(), StorageError> = db.write(|txn| {
        txn.open_table(RAFT_STATE)?.insert("k", b"v".as_slice())?;
        Err(decode::<u64>(|| "forced failure".into(), b"not json").expect_err("bad json"))
    });
    assert!(matches!(res, Err(StorageError::Decode { .. })));
    let got: Option<u64> = db.read(|txn| get_json(&txn.open_table(RAFT_STATE)?, "k")).expect("read");
    assert_eq!(got, None);
}
