//! Checking the function an attribute is put on, and writing the
//! expansion.
//!
//! ```text
//! #[fairloop::main(cores = 4)]              fn main() -> R {
//! async fn main() -> R { body }     ==>         <R: Send, checked at R's span>
//!                                               let rt = Runtime::builder().cores(4).build()
//!                                                   .unwrap_or_else(|e| panic!(..));
//!                                               let out = rt.block_on(async move { body });
//!                                               rt.shutdown_graceful(5 s);
//!                                               out
//!                                           }
//! ```
//!
//! `#[fairloop::test]` is the same with `#[test]` in front, unpinned cores
//! (tests run in parallel) and a 1 s deadline. On an error the function is
//! still emitted (expanded with default arguments if only the arguments
//! are wrong), so that the compiler reports the error and nothing else.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType};

use crate::args::{accepted, parse_args, Args};

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Main,
    Test,
}

impl Kind {
    /// The attribute as the user writes it.
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[fairloop::main]",
            Kind::Test => "#[fairloop::test]",
        }
    }

    /// A full example of the attribute with arguments.
    pub(crate) fn example(self) -> &'static str {
        match self {
            Kind::Main => "#[fairloop::main(cores = 4, reserve_core = \"healthcheck\")]",
            Kind::Test => "#[fairloop::test(cores = 2)]",
        }
    }

    /// The deadline given to `shutdown_graceful` once the body returned,
    /// in seconds (documented on `fairloop::main` and `fairloop::test`).
    fn deadline_secs(self) -> u64 {
        match self {
            Kind::Main => 5,
            Kind::Test => 1,
        }
    }
}

/// The whole expansion of `kind` with arguments `args` on `item`.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                format!("{} goes on an `async fn`: {e}", kind.attr()),
            );
            return with_error(item, e);
        }
    };
    if let Err(e) = check_fn(kind, &func) {
        return with_error(refused(kind, func), e);
    }
    match parse_args(kind, args) {
        Ok(args) => generate(kind, &args, func),
        Err(e) => with_error(generate(kind, &Args::default(), func), e),
    }
}

/// What stands in for a refused fn, so that the compiler reports the
/// attribute's error and nothing else: a plain fn as written, or, for an
/// `async fn` (which `main` may not be, and whose body may `.await`), its
/// signature without `async`, parameters or generics, and a body that is
/// never compiled to code (the crate does not build).
fn refused(kind: Kind, mut func: ItemFn) -> TokenStream {
    if func.sig.asyncness.take().is_some() {
        func.sig.inputs.clear();
        func.sig.variadic = None;
        func.sig.generics = syn::Generics::default();
        let attr = kind.attr();
        func.block = syn::parse_quote!({
            ::core::unreachable!("{} refused this fn: see the error above", #attr)
        });
    }
    func.into_token_stream()
}

fn with_error(mut tokens: TokenStream, e: syn::Error) -> TokenStream {
    tokens.extend(e.to_compile_error());
    tokens
}

/// Checks that `func` is an `async fn` the runtime can call: no
/// parameters, no generics, and (for `test`) no `#[test]` of its own.
pub(crate) fn check_fn(kind: Kind, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let name = &sig.ident;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!(
                "{} goes on an `async fn`: write `async fn {name}`",
                kind.attr()
            ),
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new_spanned(
            &sig.inputs,
            format!(
                "{}: `{name}` must take no arguments (the runtime calls it with none); \
                 the attribute's own arguments go in the attribute: {}",
                kind.attr(),
                accepted(kind)
            ),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            format!("{}: `{name}` must not be generic", kind.attr()),
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            v,
            format!("{}: `{name}` must take no arguments", kind.attr()),
        ));
    }
    if kind == Kind::Test {
        if let Some(a) = func.attrs.iter().find(|a| a.path().is_ident("test")) {
            return Err(syn::Error::new_spanned(
                a,
                "#[fairloop::test] makes the fn a #[test] already: remove this `#[test]`",
            ));
        }
    }
    Ok(())
}

/// The function that builds the runtime, runs the body and shuts down.
fn generate(kind: Kind, args: &Args, func: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    sig.asyncness = None;
    let (output, output_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    // Hygienic names: the body cannot see them.
    let rt = Ident::new("__fairloop_runtime", Span::mixed_site());
    let out = Ident::new("__fairloop_output", Span::mixed_site());
    let attr = kind.attr();
    let cores = args.cores.as_ref().map(|(lit, _)| {
        quote_spanned! {lit.span()=>
            const _: () = ::core::assert!(
                #lit <= ::fairloop::MAX_CORES,
                "`cores` is above fairloop::MAX_CORES (1024)",
            );
        }
    });
    let set_cores = args.cores.as_ref().map(|(lit, _)| quote!(.cores(#lit)));
    let reserve = args.reserve.iter().map(|name| quote!(.reserve_core(#name)));
    let pin = (kind == Kind::Test).then(|| quote!(.pin_cores(false)));
    let test_attr = (kind == Kind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    let secs = kind.deadline_secs();
    // The output crosses from core 0 back to the calling thread: say so at
    // the return type rather than deep inside `block_on`'s bounds.
    let output_is_send = quote_spanned! {output_span=>
        fn __fairloop_output_must_be_send<T: ::core::marker::Send>() {}
        __fairloop_output_must_be_send::<#output>();
    };
    quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #cores
            #output_is_send
            let #rt = ::fairloop::Runtime::builder()
                #set_cores
                #(#reserve)*
                #pin
                .build()
                .unwrap_or_else(|e| ::core::panic!(
                    "{}: building the runtime failed: {}; check the attribute's arguments",
                    #attr, e,
                ));
            let #out = #rt.block_on(async move #block);
            #rt.shutdown_graceful(::core::time::Duration::from_secs(#secs));
            #out
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::ItemFn;

    use super::{check_fn, expand, Kind};

    fn check(kind: Kind, item: proc_macro2::TokenStream) -> Result<(), String> {
        let func: ItemFn = syn::parse2(item).expect("a fn");
        check_fn(kind, &func).map_err(|e| e.to_string())
    }

    #[test]
    fn an_async_fn_without_arguments_is_accepted() {
        check(
            Kind::Main,
            quote!(
                async fn main() {}
            ),
        )
        .unwrap();
        check(
            Kind::Main,
            quote!(
                async fn main() -> std::io::Result<()> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        check(
            Kind::Test,
            quote!(
                #[ignore]
                async fn t() {}
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_plain_fn_is_refused_with_a_fix() {
        assert_eq!(
            check(
                Kind::Main,
                quote!(
                    fn main() {}
                )
            )
            .unwrap_err(),
            "#[fairloop::main] goes on an `async fn`: write `async fn main`"
        );
        assert_eq!(
            check(
                Kind::Test,
                quote!(
                    fn works() {}
                )
            )
            .unwrap_err(),
            "#[fairloop::test] goes on an `async fn`: write `async fn works`"
        );
    }

    #[test]
    fn arguments_and_generics_on_the_fn_are_refused() {
        let e = check(
            Kind::Main,
            quote!(
                async fn main(cores: usize) {}
            ),
        )
        .unwrap_err();
        assert!(
            e.starts_with("#[fairloop::main]: `main` must take no arguments"),
            "{e}"
        );
        assert!(e.contains("accepts `cores = <integer>`"), "{e}");
        let e = check(
            Kind::Test,
            quote!(
                async fn t<T>() {}
            ),
        )
        .unwrap_err();
        assert_eq!(e, "#[fairloop::test]: `t` must not be generic");
    }

    #[test]
    fn a_second_test_attribute_is_refused() {
        let e = check(
            Kind::Test,
            quote!(
                #[test]
                async fn t() {}
            ),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "#[fairloop::test] makes the fn a #[test] already: remove this `#[test]`"
        );
    }

    #[test]
    fn the_expansion_builds_runs_and_shuts_down() {
        let out = expand(
            Kind::Test,
            quote!(cores = 2, reserve_core = "hc"),
            quote!(
                async fn t() -> u32 {
                    7
                }
            ),
        )
        .to_string();
        for part in [
            "# [:: core :: prelude :: v1 :: test]",
            "fn t () -> u32",
            ". cores (2) . reserve_core (\"hc\") . pin_cores (false) . build ()",
            ". block_on (async move { 7 })",
            ". shutdown_graceful (:: core :: time :: Duration :: from_secs (1u64))",
        ] {
            assert!(out.contains(part), "`{part}` missing from {out}");
        }
        assert!(!out.contains("async fn"), "{out}");
        let main = expand(
            Kind::Main,
            quote!(),
            quote!(
                async fn main() {}
            ),
        )
        .to_string();
        assert!(!main.contains("pin_cores"), "{main}");
        assert!(main.contains("from_secs (5u64)"), "{main}");
    }

    #[test]
    fn bad_arguments_still_emit_the_fn_with_the_error() {
        let out = expand(
            Kind::Main,
            quote!(wat = 1),
            quote!(
                async fn main() {}
            ),
        )
        .to_string();
        assert!(out.contains("fn main ()"), "{out}");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("unknown argument `wat`"), "{out}");
        let out = expand(
            Kind::Main,
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(
            out.contains("#[fairloop::main] goes on an `async fn`"),
            "{out}"
        );
    }
}
