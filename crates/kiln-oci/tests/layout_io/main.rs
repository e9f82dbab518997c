//! Layout writers and readers: checked by independent tools (`tools`) and against each
//! other (`roundtrip`), on a tiny real image built in `support`.

mod roundtrip;
mod support;
mod tools;
