#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| chaperone::fuzzing::plan_text(data));
