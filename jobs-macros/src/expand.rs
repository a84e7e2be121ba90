//! The [`Model`] into the worker struct, its `Worker` impl, the enqueue helpers and the registration.

use crate::parse::Model;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

pub fn expand(model: &Model) -> TokenStream {
    let item = &model.item;
    let vis = &item.vis;
    let fn_ident = &item.sig.ident;
    let worker = worker_ident(fn_ident);
    let args_ty = &model.args_ty;
    let enqueuer = &model.enqueuer;
    let name = match &model.name {
        Some(lit) => lit.value(),
        None => worker.to_string(),
    };
    let queue = model
        .queue
        .as_ref()
        .map_or_else(|| "default".to_owned(), |lit| lit.value());
    let mut config = quote!(::jobs::WorkerConfig::new(#queue));
    if let Some(n) = model.max_retries {
        config = quote!(#config.max_retries(#n));
    }
    if let Some(ms) = model.retry_delay {
        config = quote!(#config.retry_delay(::core::time::Duration::from_millis(#ms)));
    }
    if let Some(ms) = model.timeout {
        config = quote!(#config.timeout(::core::time::Duration::from_millis(#ms)));
    }

    let drain = &model.drain;
    let vars: Vec<Ident> = (0..model.extractors.len())
        .map(|i| format_ident!("__extracted_{}", i))
        .collect();
    let extract = model.extractors.iter().zip(&vars).map(|(ty, var)| {
        quote_spanned! {ty.span()=>
            let #var = <#ty as ::jobs::FromJobContext>::from_context(&__ctx)?;
        }
    });
    let requirements = model.extractors.iter().map(|ty| {
        quote_spanned! {ty.span()=> <#ty as ::jobs::FromJobContext>::requirements(__out);}
    });
    let output_span = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => fn_ident.span(),
    };
    // Spanned at the return type, so an error type that does not convert points there.
    let into_result = quote_spanned!(output_span=> ::jobs::__private::into_result(__result));
    let doc = format!(
        "The worker `#[worker]` generated from [`{fn_ident}`]: job name `{name}`, queue `{queue}`."
    );

    quote! {
        #item

        #[doc = #doc]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #worker;

        impl ::jobs::Worker for #worker {
            type Args = #args_ty;
            type Enqueuer = #enqueuer;
            const NAME: &'static str = #name;
            const CONFIG: ::jobs::WorkerConfig = #config;
            const DRAIN: &'static [::jobs::BackendKind] =
                &[#(<#drain as ::jobs::Enqueuer>::BACKEND),*];

            fn requirements(__out: &mut ::std::vec::Vec<::jobs::StateRequirement>) {
                let _ = &__out;
                #(#requirements)*
            }

            #[allow(unused_variables)]
            fn handle(
                __args: Self::Args,
                __ctx: ::jobs::JobContext,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<(), ::jobs::BoxError>>
                   + ::core::marker::Send {
                async move {
                    #(#extract)*
                    let __result = #fn_ident(__args #(, #vars)*).await;
                    #into_result
                }
            }
        }

        impl #worker {
            /// Enqueues one job now, on the worker's backend; returns its id.
            pub async fn enqueue(args: #args_ty) -> ::core::result::Result<::jobs::JobId, ::jobs::Error> {
                <Self as ::jobs::Enqueue>::enqueue(args).await
            }

            /// Enqueues one job to run once `delay` has passed.
            pub async fn enqueue_in(
                delay: ::core::time::Duration,
                args: #args_ty,
            ) -> ::core::result::Result<::jobs::JobId, ::jobs::Error> {
                <Self as ::jobs::Enqueue>::enqueue_in(delay, args).await
            }

            /// Enqueues many jobs in one round trip; returns their ids in order.
            pub async fn enqueue_batch(
                args: impl ::core::iter::IntoIterator<Item = #args_ty>,
            ) -> ::core::result::Result<::std::vec::Vec<::jobs::JobId>, ::jobs::Error> {
                <Self as ::jobs::Enqueue>::enqueue_batch(args).await
            }

            /// Enqueues one job inside the caller's transaction: it exists only if that commits.
            pub async fn enqueue_tx<C: ::jobs::EnqueueTx<#enqueuer>>(
                conn: C,
                args: #args_ty,
            ) -> ::core::result::Result<::jobs::JobId, ::jobs::Error> {
                <Self as ::jobs::Enqueue>::enqueue_tx(conn, args).await
            }
        }

        ::jobs::__private::inventory::submit! {
            ::jobs::__private::Registration::of::<#worker>(::core::file!(), ::core::line!())
        }
    }
}

/// `send_welcome` → `SendWelcome`.
fn worker_ident(fn_ident: &Ident) -> Ident {
    let name = fn_ident.to_string();
    let pascal: String = name
        .trim_start_matches("r#")
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect();
    Ident::new(&pascal, fn_ident.span())
}
