//! Saving the engine's state: the whole state file, or one journal line per account
//! change; an account operation that cannot be recorded is undone, so memory and disk
//! never disagree.

use super::*;

impl Engine {
    pub(super) fn save(&mut self) {
        match self.store.save(self.accounts.iter(), &self.seen) {
            Ok(()) => {
                self.dirty = false;
                self.save_error = None;
            }
            Err(err) => {
                self.dirty = true;
                self.save_error = Some(err.to_string());
                tracing::error!(error = %err, "could not save state; will retry with the next change");
            }
        }
    }

    /// Applies an operation on account `name` and records it (one journal entry); if that
    /// fails, the operation is undone and the client gets the error, so memory and disk
    /// never disagree.
    pub(super) fn mutate(
        &mut self,
        name: &str,
        op: impl FnOnce(
            &mut Accounts,
            &ProfileView,
            cmdr_core::ExpiryOf<'_>,
        ) -> Result<Vec<AccountChange>, ErrorReply>,
    ) -> Result<Vec<AccountChange>, ErrorReply> {
        let before = self.accounts.get(name).ok().cloned();
        if let Some(touched) = &mut self.touched {
            touched.push(name.to_owned());
        }
        let expiry_of = expiry_of!(self);
        let changes = op(&mut self.accounts, &self.view, &expiry_of)?;
        if let Err(err) = self.journal(name) {
            self.accounts.restore(name, before);
            tracing::error!(error = %err, "could not save state");
            return Err(ErrorReply {
                code: ErrorCode::Internal,
                message: err.to_string(),
            });
        }
        self.emit_account_changes(changes.clone());
        Ok(changes)
    }

    /// Records account `name` as it is now (one journal entry) after a change of the
    /// daemon's own, such as a validation's verdict; if that fails, the whole state is
    /// saved with the next change.
    pub(super) fn persist(&mut self, name: &str) {
        if let Err(err) = self.journal(name) {
            self.dirty = true;
            tracing::error!(error = %err, "could not save state; will retry with the next change");
        }
    }

    /// Appends account `name` as it is now (or its removal) to the journal, and folds the
    /// journal into the state file when it is due or an earlier save is pending.
    fn journal(&mut self, name: &str) -> Result<(), crate::store::StoreError> {
        let entry = match self.accounts.get(name) {
            Ok(account) => JournalEntry::put(account),
            Err(_) => JournalEntry::Remove(name.to_owned()),
        };
        let due = match self.store.append(&[entry], self.accounts.len()) {
            Ok(due) => due,
            Err(err) => {
                self.save_error = Some(err.to_string());
                return Err(err);
            }
        };
        if !self.dirty {
            self.save_error = None;
        }
        if due || self.dirty {
            self.save();
        }
        Ok(())
    }
}
