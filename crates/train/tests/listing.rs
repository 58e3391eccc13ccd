//! Listing image folders and CSV lists as a user lays them out, with the awkward parts: a text
//! file, an empty class, nested folders, odd extensions; and the data splits training uses
//! (by class, within classes, as `[data] split` chooses them).

use std::path::Path;

use triplet_train::config::{DataConfig, SplitKind};
use triplet_train::data::listing::{Listing, ListingError};
use triplet_train::data::source::{self, ImageSet};
use triplet_train::data::split::split;

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
    let index = Listing::from_folder(root).unwrap();
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

/// Every format photos and scans are kept in is listed as an image, whatever the case of its
/// extension; anything else is skipped and named.
#[test]
fn every_image_format_users_keep_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let names = [
        "a.png", "b.jpg", "c.JPEG", "d.bmp", "e.webp", "f.gif", "g.tif", "h.TIFF", "i.pbm",
        "j.pgm", "k.ppm", "l.pnm", "m.tga",
    ];
    for class in ["x", "y"] {
        for n in names {
            touch(&root.join(class).join(n));
        }
    }
    touch(&root.join("x/readme.md"));
    let index = Listing::from_folder(root).unwrap();
    assert_eq!(index.samples.len(), 2 * names.len());
    assert_eq!(index.skipped_files, [root.join("x/readme.md")]);
    assert_eq!(
        triplet_train::data::listing::IMAGE_EXTENSIONS.len(),
        13,
        "the README lists each"
    );
}

#[test]
fn fewer_than_two_classes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    touch(&dir.path().join("only/a.png"));
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let err = Listing::from_folder(dir.path()).unwrap_err();
    assert!(matches!(
        err,
        ListingError::TooFewClasses { classes: 1, .. }
    ));
    assert!(err.to_string().contains("at least 2 classes"), "{err}");
    let missing = dir.path().join("no-such-folder");
    let err = Listing::from_folder(&missing).unwrap_err().to_string();
    assert!(err.contains("no-such-folder"), "{err}");
}

#[test]
fn csv_lists_resolve_paths_next_to_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("lists/train.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    std::fs::write(&csv, "path,label\nimgs/1.png,shoe\n\"imgs/with,comma.jpg\",bag\nimgs/2.png,shoe\nimgs/x.txt,bag\n").unwrap();
    let index = Listing::from_csv(&csv).unwrap();
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
        let err = Listing::from_csv(&csv).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

/// Image `i`'s path, relative to `root`.
fn name(set: &ImageSet, i: usize, root: &Path) -> String {
    Path::new(&set.describe(i))
        .strip_prefix(root)
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn splits_by_class_and_within_classes() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b", "c", "d"] {
        for i in 0..10 {
            touch(&dir.path().join(format!("{class}/{i}.png")));
        }
    }
    let set = source::open(dir.path()).unwrap().train;
    let train = set.with_classes(&["a".into(), "c".into()]);
    let test = set.with_classes(&["b".into(), "d".into()]);
    assert_eq!(
        (train.classes().to_vec(), test.classes().to_vec()),
        (
            vec!["a".to_string(), "c".into()],
            vec!["b".to_string(), "d".into()]
        )
    );
    assert_eq!((train.len(), test.len()), (20, 20));
    assert!((0..test.len()).all(|i| {
        let l = test.labels()[i];
        l < 2 && name(&test, i, dir.path()).starts_with(["b", "d"][l])
    }));

    let (kept, held) = set.split_within_classes(0.2, 7);
    assert_eq!((kept.len(), held.len()), (32, 8));
    for class in 0..4 {
        assert_eq!(held.labels().iter().filter(|&&l| l == class).count(), 2);
    }
    let names = |s: &ImageSet| -> Vec<String> { (0..s.len()).map(|i| s.describe(i)).collect() };
    let again = set.split_within_classes(0.2, 7);
    assert_eq!(names(&again.1), names(&held), "deterministic for a seed");
    assert_ne!(names(&set.split_within_classes(0.2, 8).1), names(&held));
    let mut all: Vec<_> = names(&kept).into_iter().chain(names(&held)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "a partition");
}

/// `[data] split` as training applies it: the last classes by name held out, named classes,
/// too few classes to hold whole ones out, a class that does not exist, and no split.
#[test]
fn the_config_chooses_the_split() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["a", "b", "c", "d", "e"] {
        for i in 0..5 {
            touch(&dir.path().join(format!("{class}/{i}.png")));
        }
    }
    let open = || source::open(dir.path()).unwrap();
    let mut notes = Vec::new();
    // 40% of 5 classes: 2 held out, the last by name.
    let s = split(open(), &DataConfig::default(), 0, &mut notes).unwrap();
    assert_eq!(s.train.classes(), ["a", "b", "c"]);
    assert_eq!(s.eval.as_ref().unwrap().classes(), ["d", "e"]);
    assert_eq!(s.description, "unseen classes d, e");
    assert!(notes.is_empty());

    let named = DataConfig {
        held_out_classes: vec!["b".into()],
        ..DataConfig::default()
    };
    let s = split(open(), &named, 0, &mut notes).unwrap();
    assert_eq!(s.eval.unwrap().classes(), ["b"]);
    assert_eq!(s.train.len(), 20);

    let unknown = DataConfig {
        held_out_classes: vec!["zebra".into()],
        ..DataConfig::default()
    };
    let err = split(open(), &unknown, 0, &mut notes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class `zebra`") && err.contains("a, b, c, d, e"),
        "{err}"
    );

    let within = DataConfig {
        split: SplitKind::WithinClass,
        held_out_fraction: 0.4,
        ..DataConfig::default()
    };
    let s = split(open(), &within, 3, &mut notes).unwrap();
    assert_eq!((s.train.len(), s.eval.as_ref().unwrap().len()), (15, 10));
    assert_eq!(s.eval.unwrap().classes().len(), 5);
    assert_eq!(s.description, "40% of each class");

    let none = DataConfig {
        split: SplitKind::None,
        ..DataConfig::default()
    };
    let s = split(open(), &none, 0, &mut notes).unwrap();
    assert!(s.eval.is_none() && s.train.len() == 25);

    // Three classes cannot give 2 to train and 2 to evaluate: within classes instead.
    std::fs::remove_dir_all(dir.path().join("d")).unwrap();
    std::fs::remove_dir_all(dir.path().join("e")).unwrap();
    let s = split(open(), &DataConfig::default(), 0, &mut notes).unwrap();
    assert_eq!(s.eval.unwrap().classes().len(), 3);
    assert!(
        notes[0].contains("too few to hold out whole classes"),
        "{notes:?}"
    );
}
