//! A guard in front of the GraphQL parser (issue 9, item 1).
//!
//! async-graphql's parser (pest) recurses once per nested list, input object, selection
//! set and argument list, so a few kilobytes of `[[[[…` overflow a worker's stack and
//! abort the process. [`ParseGuard`] is a schema extension: it runs before every parse,
//! whichever transport brought the document (POST, GET `?query=`, both WebSocket
//! protocols), and refuses a document that is too long or nests brackets too deep with a
//! `VALIDATION_ERROR`, without recursing itself. Once parsed, a subscription must select
//! exactly one root field (GraphQL spec 5.2.3.1), so that one operation opens one event
//! stream and the per-connection limit on operations bounds the streams.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use std::collections::HashSet;

use async_graphql::Name;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

/// Longest document accepted, in bytes: the HTTP body limit, so that GET and the sockets
/// accept no more than POST does.
pub const MAX_DOCUMENT_BYTES: usize = crate::http::MAX_BODY_BYTES;
/// Deepest nesting of `{`, `[` and `(` accepted anywhere in a document. Selection depth is
/// limited further (to [`super::MAX_DEPTH`]) once the document is parsed; this bound only
/// keeps the parser's recursion far from the stack's end.
pub const MAX_NESTING: usize = 64;

/// Why a document was refused before parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLong,
    TooDeep,
    NotOneRootField,
}

impl Refusal {
    fn message(&self) -> String {
        match self {
            Refusal::TooLong => {
                format!("The document is longer than {MAX_DOCUMENT_BYTES} bytes")
            }
            Refusal::TooDeep => format!("The document nests deeper than {MAX_NESTING} levels"),
            Refusal::NotOneRootField => "A subscription selects exactly one root field".into(),
        }
    }

    /// The error a client sees (`extensions.code` = `VALIDATION_ERROR`).
    pub fn into_server_error(self) -> ServerError {
        let mut err = ServerError::new(self.message(), None);
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", "VALIDATION_ERROR");
        err.extensions = Some(extensions);
        err
    }
}

/// Checks a document without parsing it: one linear pass that counts open brackets and
/// skips string literals (`"…"` with escapes, block strings `"""…"""`) and `#` comments,
/// where brackets mean nothing.
pub fn check(document: &str) -> Result<(), Refusal> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(Refusal::TooLong);
    }
    let bytes = document.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                // A block string ends at the first `"""` not escaped as `\"""`.
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Refusal::TooDeep);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The schema extension that runs [`check`] before every parse.
pub struct ParseGuard;

impl ExtensionFactory for ParseGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ParseGuardExtension)
    }
}

struct ParseGuardExtension;

#[async_trait::async_trait]
impl Extension for ParseGuardExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        check(query).map_err(Refusal::into_server_error)?;
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            if operation.ty == OperationType::Subscription
                && root_fields(
                    &operation.selection_set.node,
                    &document,
                    &mut HashSet::new(),
                ) != 1
            {
                return Err(Refusal::NotOneRootField.into_server_error());
            }
        }
        Ok(document)
    }
}

/// Fields selected at the root of `set`, through fragments. The guard's nesting limit bounds
/// the recursion through inline fragments; `seen` ends it through named ones (a cycle is
/// refused later by validation).
fn root_fields(
    set: &SelectionSet,
    document: &ExecutableDocument,
    seen: &mut HashSet<Name>,
) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(inline) => {
                root_fields(&inline.node.selection_set.node, document, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if !seen.insert(name.clone()) {
                    return 0;
                }
                document.fragments.get(name).map_or(0, |fragment| {
                    root_fields(&fragment.node.selection_set.node, document, seen)
                })
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_brackets_outside_strings_and_comments() {
        assert_eq!(check("{ me { id } }"), Ok(()));
        let deep = format!("{{me(x:{}){{id}}}}", "[".repeat(100));
        assert_eq!(check(&deep), Err(Refusal::TooDeep));
        let quoted = format!("{{me(x:\"{}\"){{id}}}}", "[".repeat(100));
        assert_eq!(check(&quoted), Ok(()));
        let escaped = format!("{{me(x:\"\\\"{}\"){{id}}}}", "[".repeat(100));
        assert_eq!(check(&escaped), Ok(()));
        let block = format!("{{me(x:\"\"\" \\\"\"\" {} \"\"\"){{id}}}}", "{".repeat(100));
        assert_eq!(check(&block), Ok(()));
        let comment = format!("# {}\n{{ me {{ id }} }}", "(".repeat(100));
        assert_eq!(check(&comment), Ok(()));
        assert_eq!(
            check(&"a".repeat(MAX_DOCUMENT_BYTES + 1)),
            Err(Refusal::TooLong)
        );
    }
}
