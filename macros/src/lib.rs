//! `#[fairloop::main]` and `#[fairloop::test]`: run an `async fn` on a
//! fairloop runtime. Users reach them through the `fairloop` facade, which
//! documents them with examples; this crate only turns the attribute and
//! the function into the code that builds the runtime, runs the body with
//! `block_on`, and shuts the runtime down gracefully.
//!
//! Modules: `args` (the attribute's arguments: parsing and checking),
//! `expand` (checking the function and writing the expansion).

mod args;
mod expand;

use proc_macro::TokenStream;

use expand::Kind;

/// Runs an `async fn` (usually `main`) on a new fairloop runtime, then shuts
/// the runtime down gracefully with a 5 s deadline. Arguments:
/// `cores = <integer>`, `reserve_core = "<name>"` (may be repeated), both
/// optional. Implemented in the `fairloop-macros` crate; see `fairloop::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Main, args.into(), item.into()).into()
}

/// Makes an `async fn` a `#[test]` that runs on a new fairloop runtime
/// (cores unpinned), then shuts the runtime down gracefully with a 1 s
/// deadline. Arguments: `cores = <integer>`, `reserve_core = "<name>"` (may
/// be repeated), both optional. Implemented in the `fairloop-macros` crate;
/// see `fairloop::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Test, args.into(), item.into()).into()
}
