//! Compile errors of `#[worker]`, each pointing at the offending token.

#[test]
fn worker_macro_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}
