//! Listing image folders and CSV lists as a user lays them out, with the awkward parts: a text
//! file, an empty class, nested folders, odd extensions; and the class/within-class splits.

use std::path::Path;

use triplet_train::data::index::{DatasetIndex, IndexError};

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
}

#[test]
fn folder_per_class_with_skips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("cat/a.png"));
    touch(&root.join("cat/nested/b.JPG"));
    touch(&root.join("cat/notes.txt"));
    touch(&root.join("dog/c.webp"));
    touch(&root.join("dog/.hidden.png"));
    touch(&root.join("bird/d.bmp"));
    touch(&root.join("bird/e.jpeg"));
    std::fs::create_dir_all(root.join("empty")).unwrap();
    touch(&root.join("README.md")); // not in a class folder
    let index = DatasetIndex::from_folder(root).unwrap();
    assert_eq!(index.classes, ["bird", "cat", "dog"]);
    let listed: Vec<(String, usize)> = index
        .samples
        .iter()
        .map(|s| {
            (
                s.path.strip_prefix(root).unwrap().display().to_string(),
                s.label,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("bird/d.bmp".into(), 0),
            ("bird/e.jpeg".into(), 0),
            ("cat/a.png".into(), 1),
            ("cat/nested/b.JPG".into(), 1),
            ("dog/c.webp".into(), 2)
        ]
    );
    assert_eq!(index.skipped_files, [root.join("cat/notes.txt")]);
    assert_eq!(index.empty_classes, ["empty"]);
}

#[test]
fn fewer_than_two_classes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("only/a.png"));
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let err = DatasetIndex::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, IndexError::TooFewClasses { classes: 1, .. }));
    assert!(err.to_string().contains("at least 2 classes"), "{err}");
    let missing = dir.path().join("no-such-folder");
    let err = DatasetIndex::from_folder(&missing).unwrap_err().to_string();
    assert!(err.contains("no-such-folder"), "{err}");
}

#[test]
fn csv_lists_resolve_paths_next_to_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("lists/train.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    std::fs::write(&csv, "path,label\nimgs/1.png,shoe\n\"imgs/with,comma.jpg\",bag\nimgs/2.png,shoe\nimgs/x.txt,bag\n").unwrap();
    let index = DatasetIndex::from_csv(&csv).unwrap();
    assert_eq!(index.classes, ["bag", "shoe"]);
    let base = dir.path().join("lists");
    assert_eq!(index.samples.len(), 3);
    assert_eq!(index.samples[0].path, base.join("imgs/with,comma.jpg"));
    assert_eq!(index.samples[0].label, 0);
    assert_eq!(index.skipped_files, [base.join("imgs/x.txt")]);
}

#[test]
fn broken_csv_lists_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    for (text, want) in [
        (
            "file,class\na.png,x\n",
            "bad.csv:1: expected the header `path,label`",
        ),
        ("path,label\na.png,x\nb.png\n", "bad.csv:3:"),
        ("path,label\na.png,\n", "bad.csv:2: empty path or label"),
    ] {
        std::fs::write(&csv, text).unwrap();
        let err = DatasetIndex::from_csv(&csv).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn splits_by_class_and_within_classes() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b", "c", "d"] {
        for i in 0..10 {
            touch(&dir.path().join(format!("{class}/{i}.png")));
        }
    }
    let index = DatasetIndex::from_folder(dir.path()).unwrap();
    let (train, test) = index.split_by_class(&[1, 3]);
    assert_eq!(
        (train.classes.clone(), test.classes.clone()),
        (
            vec!["a".to_string(), "c".into()],
            vec!["b".to_string(), "d".into()]
        )
    );
    assert_eq!((train.samples.len(), test.samples.len()), (20, 20));
    assert!(
        test.samples
            .iter()
            .all(|s| s.label < 2 && s.path.starts_with(dir.path().join(["b", "d"][s.label])))
    );

    let (kept, held) = index.split_within_classes(0.2, 7);
    assert_eq!((kept.samples.len(), held.samples.len()), (32, 8));
    for class in 0..4 {
        assert_eq!(held.samples.iter().filter(|s| s.label == class).count(), 2);
    }
    let again = index.split_within_classes(0.2, 7);
    assert_eq!(again.1, held, "deterministic for a seed");
    assert_ne!(index.split_within_classes(0.2, 8).1, held);
    let mut all: Vec<_> = kept
        .samples
        .iter()
        .chain(&held.samples)
        .map(|s| s.path.clone())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "a partition");
}
