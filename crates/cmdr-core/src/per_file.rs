//! One value for each of the two AWS files, indexed by [`FileKind`].

use std::ops::{Index, IndexMut};

use crate::profile::FileKind;

/// A value for the config file and one for the credentials file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerFile<T> {
    pub config: T,
    pub credentials: T,
}

impl<T> PerFile<T> {
    /// Both files, config first: the order the SDK reads them in.
    pub const KINDS: [FileKind; 2] = [FileKind::Config, FileKind::Credentials];

    pub fn new(config: T, credentials: T) -> PerFile<T> {
        PerFile {
            config,
            credentials,
        }
    }

    /// The same value for both.
    pub fn both(value: T) -> PerFile<T>
    where
        T: Clone,
    {
        PerFile::new(value.clone(), value)
    }

    pub fn map<U>(self, mut f: impl FnMut(FileKind, T) -> U) -> PerFile<U> {
        PerFile::new(
            f(FileKind::Config, self.config),
            f(FileKind::Credentials, self.credentials),
        )
    }

    pub fn as_ref(&self) -> PerFile<&T> {
        PerFile::new(&self.config, &self.credentials)
    }

    /// Each file with its value, config first.
    pub fn into_pairs(self) -> [(FileKind, T); 2] {
        [
            (FileKind::Config, self.config),
            (FileKind::Credentials, self.credentials),
        ]
    }

    pub fn values(&self) -> [&T; 2] {
        [&self.config, &self.credentials]
    }
}

impl<T> Index<FileKind> for PerFile<T> {
    type Output = T;

    fn index(&self, kind: FileKind) -> &T {
        match kind {
            FileKind::Config => &self.config,
            FileKind::Credentials => &self.credentials,
        }
    }
}

impl<T> IndexMut<FileKind> for PerFile<T> {
    fn index_mut(&mut self, kind: FileKind) -> &mut T {
        match kind {
            FileKind::Config => &mut self.config,
            FileKind::Credentials => &mut self.credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_by_kind() {
        let mut files = PerFile::new(1, 2);
        files[FileKind::Credentials] += 10;
        assert_eq!(files[FileKind::Config], 1);
        assert_eq!(files[FileKind::Credentials], 12);
        let names = files.map(|kind, n| format!("{}={n}", kind.label()));
        assert_eq!(
            names.into_pairs().map(|(_, s)| s),
            ["config=1".to_owned(), "credentials=12".to_owned()]
        );
    }
}
