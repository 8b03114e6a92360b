//! An object and its owners up to the root: what the resolver finds and what grouping,
//! breadcrumbs and routing read.

use std::sync::Arc;

use super::cache::Meta;
use crate::event::ObjectRef;

/// One object of a chain and, if it could be read, its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub object: ObjectRef,
    pub meta: Option<Arc<Meta>>,
}

/// An involved object and its owners, up to the root.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub links: Vec<Link>,
}

impl Chain {
    /// A chain of just the involved object (nothing looked up).
    pub fn of(involved: &ObjectRef) -> Self {
        Self {
            links: vec![Link {
                object: involved.clone(),
                meta: None,
            }],
        }
    }

    pub fn root(&self) -> &ObjectRef {
        &self.links.last().expect("a chain is never empty").object
    }

    pub fn objects(&self) -> impl Iterator<Item = &ObjectRef> {
        self.links.iter().map(|l| &l.object)
    }

    /// Records the root's metadata (and its uid when the reference had none) and follows
    /// its owner: whether there is a new root to look up.
    pub fn climb(&mut self, meta: Arc<Meta>) -> bool {
        let owner = meta.controller.clone();
        let last = self.links.last_mut().expect("a chain is never empty");
        if last.object.uid.is_empty() {
            last.object.uid = meta.object.uid.clone();
        }
        last.meta = Some(meta);
        match owner {
            Some(object) => {
                self.links.push(Link { object, meta: None });
                true
            }
            None => false,
        }
    }
}
