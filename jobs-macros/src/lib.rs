//! The `#[worker]` attribute of the `jobs` crate. Use it through `jobs::worker`; see that crate's
//! documentation for the arguments and the code it generates.

mod expand;
mod parse;

use proc_macro::TokenStream;

/// Turns an `async fn` into a background-job worker. Documented on `jobs::worker`.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match parse::parse(args.into(), item.clone()) {
        Ok(model) => expand::expand(&model).into(),
        // Emit the original item too, so one mistake does not become many and IDEs keep working.
        Err(err) => {
            let err = err.to_compile_error();
            quote::quote!(#err #item).into()
        }
    }
}
