//! Reading and writing data: extended XYZ frames and model files.
//!
//! Layer 3: owns file formats (extended XYZ read/write/append, the binary container, the model's
//! sections of a model file, LAMMPS data files and dumps). Imports structure, basis and model; never uq or
//! anything above it.

pub mod container;
pub mod extxyz;
pub mod lammps_data;
pub mod lammps_dump;
pub mod modelfile;

/// Whether `path` exists and is neither a regular file nor a directory: a device such as
/// `/dev/null` or `/dev/stdout`, a FIFO, a socket. Such a target is written in place: the
/// atomic writers' rename of a temporary file over it would replace the device node itself
/// (as root, `--per-atom /dev/null` turned `/dev/null` into a regular file).
pub(crate) fn is_special_file(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    /// A FIFO stands in for /dev/null (a test must not risk the real one): both atomic writers
    /// write into it and leave it a FIFO. Before, they renamed a temporary file over it.
    #[test]
    fn atomic_writers_write_into_a_fifo_and_leave_it_one() {
        let dir = std::env::temp_dir().join(format!("aceuq-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("out.fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo failed");
        // Held open for reading and writing, so the writers' open does not block and the pipe
        // buffers what they write.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        super::container::write_atomic(&fifo, b"hello\n").unwrap();
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let mut got = [0u8; 6];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n");
        let s = crate::testing::random_structure(&["Li"], 1, 3, false);
        let n = super::extxyz::write_file_atomic(&fifo, [&s], &Default::default()).unwrap();
        assert_eq!(n, 1);
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let mut first = [0u8; 2];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"2\n", "the frame's atom count line");
        drop(reader);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
