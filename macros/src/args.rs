//! The attribute's arguments: `cores = <integer>` and
//! `reserve_core = "<name>"`, both optional, in any order, comma-separated.
//!
//! [`parse_args`] checks everything that can be checked without the
//! runtime: an unknown key, a value of the wrong type, `cores = 0`, a key
//! given twice, a reservation named twice, more reservations than the
//! given cores allow. Each error points at the offending tokens and says
//! what is accepted. The upper bound of `cores` (`fairloop::MAX_CORES`) is
//! checked by a constant assertion in the expansion, against the real
//! constant.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitInt, LitStr, Meta, Token};

use crate::expand::Kind;

/// The parsed arguments.
#[derive(Default)]
pub(crate) struct Args {
    /// `cores = N`: the literal (kept for its span) and its value.
    pub(crate) cores: Option<(LitInt, usize)>,
    /// `reserve_core = "name"`, in the order given.
    pub(crate) reserve: Vec<LitStr>,
}

/// What the attribute accepts, for the error messages.
pub(crate) fn accepted(kind: Kind) -> String {
    format!(
        "{attr} accepts `cores = <integer>` and `reserve_core = \"<name>\"`, both optional, \
         e.g. `{example}`",
        attr = kind.attr(),
        example = kind.example(),
    )
}

/// Parses and checks the attribute's arguments. All errors found are
/// reported together.
pub(crate) fn parse_args(kind: Kind, tokens: TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated
        .parse2(tokens)
        .map_err(|e| syn::Error::new(e.span(), format!("{e}: {}", accepted(kind))))?;
    let mut args = Args::default();
    let mut errors: Option<syn::Error> = None;
    let mut fail = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for meta in metas {
        let nv = match meta {
            Meta::NameValue(nv) => nv,
            other => {
                fail(syn::Error::new(
                    other.span(),
                    format!("expected `name = value`: {}", accepted(kind)),
                ));
                continue;
            }
        };
        let key = nv
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "cores" => match int_literal(&nv.value) {
                Some(lit) => match lit.base10_parse::<usize>() {
                    Ok(0) => fail(syn::Error::new(
                        lit.span(),
                        "`cores = 0`: a runtime needs at least 1 core",
                    )),
                    Ok(n) => {
                        if args.cores.is_some() {
                            fail(syn::Error::new(
                                nv.path.span(),
                                "`cores` is given twice: give it once",
                            ));
                        } else {
                            args.cores = Some((lit.clone(), n));
                        }
                    }
                    Err(e) => fail(syn::Error::new(
                        lit.span(),
                        format!("`cores` takes a positive integer, e.g. `cores = 4`: {e}"),
                    )),
                },
                None => fail(syn::Error::new(
                    nv.value.span(),
                    "`cores` takes an integer literal, e.g. `cores = 4`",
                )),
            },
            "reserve_core" => match str_literal(&nv.value) {
                Some(name) if name.value().is_empty() => fail(syn::Error::new(
                    name.span(),
                    "`reserve_core` needs a name: the one partitions use in \
                     `Placement::Reserved(name)`, e.g. `reserve_core = \"healthcheck\"`",
                )),
                Some(name) => {
                    if args.reserve.iter().any(|r| r.value() == name.value()) {
                        fail(syn::Error::new(
                            name.span(),
                            format!(
                                "`reserve_core = {:?}` is given twice: each reservation needs \
                                 its own name",
                                name.value()
                            ),
                        ));
                    } else {
                        args.reserve.push(name.clone());
                    }
                }
                None => fail(syn::Error::new(
                    nv.value.span(),
                    "`reserve_core` takes a string literal naming the reservation, \
                     e.g. `reserve_core = \"healthcheck\"`",
                )),
            },
            _ => fail(syn::Error::new(
                nv.path.span(),
                format!(
                    "unknown argument `{}`: {}",
                    path_text(&nv.path),
                    accepted(kind)
                ),
            )),
        }
    }
    if let Some((lit, n)) = &args.cores {
        if !args.reserve.is_empty() && args.reserve.len() >= *n {
            fail(syn::Error::new(
                lit.span(),
                format!(
                    "{} reservation(s) on {n} core(s) would leave no core for unreserved work: \
                     raise `cores` or reserve fewer",
                    args.reserve.len()
                ),
            ));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(args),
    }
}

fn int_literal(e: &Expr) -> Option<&LitInt> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i),
        Expr::Group(g) => int_literal(&g.expr),
        _ => None,
    }
}

fn str_literal(e: &Expr) -> Option<&LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        Expr::Group(g) => str_literal(&g.expr),
        _ => None,
    }
}

fn path_text(p: &syn::Path) -> String {
    p.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::{parse_args, Args};
    use crate::expand::Kind;

    fn ok(tokens: proc_macro2::TokenStream) -> Args {
        match parse_args(Kind::Main, tokens) {
            Ok(a) => a,
            Err(e) => panic!("expected the arguments to parse, got: {e}"),
        }
    }

    /// Every message of the error the arguments give, in order.
    fn err(kind: Kind, tokens: proc_macro2::TokenStream) -> Vec<String> {
        match parse_args(kind, tokens) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn no_arguments_is_every_default() {
        let a = ok(quote!());
        assert!(a.cores.is_none());
        assert!(a.reserve.is_empty());
    }

    #[test]
    fn both_arguments_in_any_order_and_reservations_repeat() {
        let a = ok(quote!(
            reserve_core = "hc",
            cores = 4,
            reserve_core = "admin",
        ));
        assert_eq!(a.cores.map(|(_, n)| n), Some(4));
        let names: Vec<_> = a.reserve.iter().map(|r| r.value()).collect();
        assert_eq!(names, ["hc", "admin"]);
    }

    #[test]
    fn an_unknown_key_says_what_is_accepted() {
        let e = err(Kind::Main, quote!(threads = 4));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("unknown argument `threads`"), "{e:?}");
        assert!(
            e[0].contains(
                "#[fairloop::main] accepts `cores = <integer>` and `reserve_core = \"<name>\"`"
            ),
            "{e:?}"
        );
        let e = err(Kind::Test, quote!(flavor = "multi"));
        assert!(e[0].contains("#[fairloop::test] accepts"), "{e:?}");
    }

    #[test]
    fn values_of_the_wrong_type_say_which_type() {
        let e = err(Kind::Main, quote!(cores = "4"));
        assert_eq!(e, ["`cores` takes an integer literal, e.g. `cores = 4`"]);
        let e = err(Kind::Main, quote!(cores = n));
        assert_eq!(e, ["`cores` takes an integer literal, e.g. `cores = 4`"]);
        let e = err(Kind::Main, quote!(reserve_core = healthcheck));
        assert!(
            e[0].starts_with("`reserve_core` takes a string literal"),
            "{e:?}"
        );
        let e = err(Kind::Main, quote!(cores = -1));
        assert!(
            e[0].starts_with("`cores` takes a positive integer"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(
            err(Kind::Main, quote!(cores = 0)),
            ["`cores = 0`: a runtime needs at least 1 core"]
        );
        let e = err(Kind::Main, quote!(reserve_core = ""));
        assert!(e[0].starts_with("`reserve_core` needs a name"), "{e:?}");
        let e = err(Kind::Main, quote!(cores = 99999999999999999999999));
        assert!(
            e[0].starts_with("`cores` takes a positive integer"),
            "{e:?}"
        );
    }

    #[test]
    fn repeats_and_impossible_combinations_are_refused() {
        let e = err(Kind::Main, quote!(cores = 2, cores = 3));
        assert_eq!(e, ["`cores` is given twice: give it once"]);
        let e = err(Kind::Main, quote!(reserve_core = "a", reserve_core = "a"));
        assert!(
            e[0].starts_with("`reserve_core = \"a\"` is given twice"),
            "{e:?}"
        );
        let e = err(Kind::Main, quote!(cores = 1, reserve_core = "a"));
        assert!(
            e[0].starts_with("1 reservation(s) on 1 core(s) would leave no core"),
            "{e:?}"
        );
    }

    #[test]
    fn other_shapes_say_name_equals_value() {
        let e = err(Kind::Main, quote!(cores));
        assert!(e[0].starts_with("expected `name = value`"), "{e:?}");
        let e = err(Kind::Main, quote!(cores(4)));
        assert!(e[0].starts_with("expected `name = value`"), "{e:?}");
        // Tokens that are no list of metas at all: syn's message, then ours.
        let e = err(Kind::Main, quote!(cores = 4 5));
        assert!(e[0].contains("#[fairloop::main] accepts"), "{e:?}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = err(Kind::Main, quote!(cores = "x", wat = 1, reserve_core = 3));
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
