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
}
