//! The conformance suite every [`ObjectStore`] must pass (used by this crate's tests
//! and, against a real S3-compatible server, by the end-to-end tests).

use crate::{ObjectStore, Precondition, StorageError};

/// Checks the store's behaviour; panics with a message on the first deviation.
/// `large` is the size of the large-object round trip (S3 uses it to exercise multipart
/// upload). Keys are written under `conformance/`.
pub fn conformance(store: &dyn ObjectStore, large: usize) {
    let d = store.describe();
    assert!(
        matches!(store.get("conformance/a/b"), Err(StorageError::NotFound { .. })),
        "{d}: missing object must be NotFound"
    );
    assert_eq!(
        store.head("conformance/a/b").unwrap(),
        None,
        "{d}: head of a missing object"
    );
    store.put("conformance/a/b", b"one").unwrap();
    store.put("conformance/a/c", b"two").unwrap();
    store.put("conformance/z", b"three").unwrap();
    store.put("conformance/empty", b"").unwrap();
    assert_eq!(store.get("conformance/a/b").unwrap(), b"one", "{d}: get");
    assert_eq!(store.get("conformance/empty").unwrap(), b"", "{d}: empty object");
    store.put("conformance/a/b", b"uno!").unwrap();
    assert_eq!(store.get("conformance/a/b").unwrap(), b"uno!", "{d}: overwrite");
    assert_eq!(store.head("conformance/a/b").unwrap(), Some(4), "{d}: head");
    assert_eq!(store.get_range("conformance/a/b", 1, 3).unwrap(), b"no", "{d}: range");
    assert_eq!(
        store.get_range("conformance/a/b", 2, 100).unwrap(),
        b"o!",
        "{d}: range past the end"
    );
    assert_eq!(
        store.list("conformance/a/").unwrap(),
        vec!["conformance/a/b".to_string(), "conformance/a/c".to_string()],
        "{d}: list"
    );
    let many = store.get_many(&["conformance/a/c", "conformance/nope", "conformance/z"]);
    assert_eq!(many.len(), 3);
    assert_eq!(many[0].as_deref().ok(), Some(&b"two"[..]), "{d}: get_many order");
    assert!(
        matches!(many[1], Err(StorageError::NotFound { .. })),
        "{d}: get_many missing"
    );
    assert_eq!(many[2].as_deref().ok(), Some(&b"three"[..]));
    let shared = store.get_many_shared(&["conformance/z", "conformance/nope", "conformance/empty"]);
    assert_eq!(shared.len(), 3);
    assert_eq!(
        shared[0].as_ref().ok().map(|b| &b.bytes[..]),
        Some(&b"three"[..]),
        "{d}: get_many_shared"
    );
    assert!(
        matches!(shared[1], Err(StorageError::NotFound { .. })),
        "{d}: get_many_shared missing"
    );
    assert_eq!(
        shared[2].as_ref().ok().map(|b| b.bytes.len()),
        Some(0),
        "{d}: shared empty"
    );
    // A mapped object keeps its bytes when the key is overwritten (writes replace files).
    let before = store.get_many_shared(&["conformance/z"]).pop().unwrap().unwrap();
    store.put("conformance/z", b"drei").unwrap();
    assert_eq!(&before.bytes[..], b"three", "{d}: shared bytes survive an overwrite");
    assert_eq!(store.get("conformance/z").unwrap(), b"drei");
    store.put("conformance/z", b"three").unwrap();
    let big: Vec<u8> = (0..large).map(|i| (i * 31 % 251) as u8).collect();
    store.put("conformance/big", &big).unwrap();
    assert_eq!(
        store.head("conformance/big").unwrap(),
        Some(large as u64),
        "{d}: large head"
    );
    assert!(store.get("conformance/big").unwrap() == big, "{d}: large round trip");
    let mid = large as u64 / 2;
    assert!(
        store.get_range("conformance/big", mid, mid + 1000).unwrap() == big[mid as usize..mid as usize + 1000],
        "{d}: large range"
    );
    conditional(store);
    for bad in ["", "/etc/passwd", "a/../b", "a//b", "a\nb", "./a"] {
        assert!(
            matches!(store.get(bad), Err(StorageError::InvalidKey { .. })),
            "{d}: key {bad:?}"
        );
        assert!(store.put(bad, b"x").is_err(), "{d}: put {bad:?}");
    }
}

/// Conditional writes: `If-None-Match: *` creates once; `If-Match` succeeds on the tag
/// last read and fails (writing nothing) on any other; a tag changes with the content;
/// a delete removes the object and deleting it again is no error. Of two writers racing
/// from one tag, exactly one wins.
pub fn conditional(store: &dyn ObjectStore) {
    let d = store.describe();
    let key = "conformance/cond";
    store.delete(key).unwrap();
    let t1 = store
        .put_if(key, b"v1", &Precondition::Absent)
        .expect("create if absent");
    assert!(
        matches!(
            store.put_if(key, b"v1b", &Precondition::Absent),
            Err(StorageError::Conflict { .. })
        ),
        "{d}: If-None-Match on an existing object must conflict"
    );
    let (bytes, tag) = store.get_tagged(key).unwrap();
    assert_eq!(bytes, b"v1", "{d}: a refused write wrote nothing");
    assert!(!t1.is_empty() && !tag.is_empty(), "{d}: tags");
    store
        .put_if(key, b"v2", &Precondition::Matches(tag.clone()))
        .expect("If-Match with the current tag");
    assert!(
        matches!(
            store.put_if(key, b"v3", &Precondition::Matches(tag.clone())),
            Err(StorageError::Conflict { .. })
        ),
        "{d}: If-Match with a stale tag must conflict"
    );
    let (bytes, tag2) = store.get_tagged(key).unwrap();
    assert_eq!(bytes, b"v2", "{d}: the stale write wrote nothing");
    assert_ne!(tag, tag2, "{d}: the tag changes with the content");
    // A race from one tag: exactly one winner.
    let wins = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let tag2 = tag2.clone();
                s.spawn(move || {
                    store
                        .put_if(key, format!("racer {i}").as_bytes(), &Precondition::Matches(tag2))
                        .is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .filter(|&w| w)
            .count()
    });
    assert_eq!(wins, 1, "{d}: exactly one of four racing conditional writes wins");
    store.delete(key).unwrap();
    store.delete(key).unwrap();
    assert!(
        matches!(store.get(key), Err(StorageError::NotFound { .. })),
        "{d}: deleted"
    );
}
