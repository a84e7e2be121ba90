//! Attribute arguments and the fn signature into a [`Model`], each rule an error at its token.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, LitInt, LitStr, PathArguments, ReturnType, Type};

const ARGUMENTS: &str = "enqueuer, drain, queue, name, max_retries, retry_delay, timeout";
/// pgmq's limit on queue names (its longest derived table name must fit in 63 bytes).
const MAX_QUEUE_LEN: usize = 47;

/// Everything `expand` needs, with the user's tokens kept for error spans.
pub struct Model {
    pub item: ItemFn,
    pub enqueuer: syn::Path,
    pub drain: Vec<syn::Path>,
    pub queue: Option<LitStr>,
    pub name: Option<LitStr>,
    pub max_retries: Option<u32>,
    pub retry_delay: Option<u64>,
    pub timeout: Option<u64>,
    pub args_ty: Type,
    pub extractors: Vec<Type>,
}

#[derive(Default)]
struct Arguments {
    enqueuer: Option<syn::Path>,
    drain: Option<Vec<syn::Path>>,
    queue: Option<LitStr>,
    name: Option<LitStr>,
    max_retries: Option<u32>,
    retry_delay: Option<u64>,
    timeout: Option<u64>,
}

pub fn parse(args: TokenStream, item: TokenStream) -> syn::Result<Model> {
    let item: ItemFn = syn::parse2(item)?;
    let mut parsed = Arguments::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let duplicate = || meta.error(format!("duplicate argument `{key}`"));
        match key.as_str() {
            "enqueuer" => {
                let path: syn::Path = meta.value()?.parse()?;
                set(&mut parsed.enqueuer, path, duplicate)
            }
            "drain" => {
                let drains = parse_drain(meta.value()?)?;
                set(&mut parsed.drain, drains, duplicate)
            }
            "queue" => {
                let lit: LitStr = meta.value()?.parse()?;
                check_queue(&lit)?;
                set(&mut parsed.queue, lit, duplicate)
            }
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(lit.span(), "`name` must not be empty"));
                }
                set(&mut parsed.name, lit, duplicate)
            }
            "max_retries" => {
                let lit: LitInt = meta.value()?.parse()?;
                let n = lit.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(lit.span(), "`max_retries` must be a whole number (u32)")
                })?;
                set(&mut parsed.max_retries, n, duplicate)
            }
            "retry_delay" => {
                let ms = duration_ms(&meta.value()?.parse()?)?;
                set(&mut parsed.retry_delay, ms, duplicate)
            }
            "timeout" => {
                let ms = duration_ms(&meta.value()?.parse()?)?;
                set(&mut parsed.timeout, ms, duplicate)
            }
            _ => Err(meta.error(format!(
                "unknown argument `{}`; expected one of: {ARGUMENTS}",
                path_text(&meta.path)
            ))),
        }
    });
    parser.parse2(args)?;

    let enqueuer = parsed.enqueuer.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing `enqueuer`: add `enqueuer = Pg` (the backend this worker's jobs go to)",
        )
    })?;
    let drain = parsed.drain.unwrap_or_default();
    if let Some(own) = drain.iter().find(|d| path_text(d) == path_text(&enqueuer)) {
        return Err(syn::Error::new(
            own.span(),
            "`drain` names the worker's own `enqueuer`; list only the backends it moved away from",
        ));
    }
    let (args_ty, extractors) = check_signature(&item)?;
    Ok(Model {
        item,
        enqueuer,
        drain,
        queue: parsed.queue,
        name: parsed.name,
        max_retries: parsed.max_retries,
        retry_delay: parsed.retry_delay,
        timeout: parsed.timeout,
        args_ty,
        extractors,
    })
}

fn set<T>(slot: &mut Option<T>, value: T, duplicate: impl Fn() -> syn::Error) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

/// `drain = Sidekiq` or `drain = [Sidekiq, Pg]`.
fn parse_drain(input: syn::parse::ParseStream) -> syn::Result<Vec<syn::Path>> {
    if input.peek(syn::token::Bracket) {
        let content;
        let brackets = syn::bracketed!(content in input);
        let paths =
            syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated(&content)?;
        if paths.is_empty() {
            return Err(syn::Error::new(
                brackets.span.join(),
                "`drain` lists at least one backend, e.g. `drain = [Sidekiq]`",
            ));
        }
        Ok(paths.into_iter().collect())
    } else {
        Ok(vec![input.parse()?])
    }
}

fn path_text(path: &syn::Path) -> String {
    quote::quote!(#path).to_string().replace(' ', "")
}

fn check_queue(lit: &LitStr) -> syn::Result<()> {
    let queue = lit.value();
    let valid_chars = queue
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if queue.is_empty() || queue.len() > MAX_QUEUE_LEN || !valid_chars {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid queue name {queue:?}: use 1 to {MAX_QUEUE_LEN} lowercase letters, digits or underscores"
            ),
        ));
    }
    Ok(())
}

fn duration_ms(lit: &LitStr) -> syn::Result<u64> {
    let duration = humantime::parse_duration(&lit.value()).map_err(|err| {
        syn::Error::new(
            lit.span(),
            format!(
                "invalid duration {:?}: {err} (write e.g. \"50ms\", \"2s\", \"5m\")",
                lit.value()
            ),
        )
    })?;
    u64::try_from(duration.as_millis())
        .map_err(|_| syn::Error::new(lit.span(), "duration is too long"))
}

/// Checks the fn's shape; returns the args type and the extractor types.
fn check_signature(item: &ItemFn) -> syn::Result<(Type, Vec<Type>)> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[worker] needs an `async fn`",
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "a worker fn cannot be `const`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            "a worker fn cannot be `unsafe`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "a worker fn cannot be variadic",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a worker fn cannot be generic: the job's args type must be known to decode it",
        ));
    }
    check_return(&sig.output, sig.ident.span())?;

    let mut types = Vec::with_capacity(sig.inputs.len());
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "a worker fn cannot take `self`: write a free `async fn`",
                ))
            }
            FnArg::Typed(typed) => types.push((*typed.ty).clone()),
        }
    }
    let mut types = types.into_iter();
    let args_ty = types.next().ok_or_else(|| {
        syn::Error::new(
            sig.paren_token.span.join(),
            "a worker fn takes the job's args as its first parameter, e.g. `args: Welcome`",
        )
    })?;
    Ok((args_ty, types.collect()))
}

/// The return type must be `Result<(), E>` (any `Result` alias, such as `anyhow::Result<()>`).
fn check_return(output: &ReturnType, fn_span: Span) -> syn::Result<()> {
    const EXPECTED: &str =
        "a worker fn must return `Result<(), E>` (E: std::error::Error or anyhow::Error)";
    let ty = match output {
        ReturnType::Default => return Err(syn::Error::new(fn_span, EXPECTED)),
        ReturnType::Type(_, ty) => ty,
    };
    let unit_ok = match &**ty {
        Type::Path(path) => path.path.segments.last().is_some_and(|last| {
            last.ident == "Result"
                && matches!(&last.arguments, PathArguments::AngleBracketed(generic)
                    if matches!(generic.args.first(),
                        Some(GenericArgument::Type(Type::Tuple(unit))) if unit.elems.is_empty()))
        }),
        _ => false,
    };
    if unit_ok {
        Ok(())
    } else {
        Err(syn::Error::new(ty.span(), EXPECTED))
    }
}
