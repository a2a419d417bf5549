//! Compile-time behaviour of `#[redis_cached]`: every misuse is an error at the offending token
//! that names the valid choices (`tests/ui/fail`), and every supported form compiles
//! (`tests/ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
