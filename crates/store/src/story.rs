//! The one test story every backend runs (feature `story`): each store operation and each
//! guarantee of [`crate::Store`], written once against the trait. A backend's tests open a
//! fresh, empty store per chapter and call [`run_all`] or the chapters one by one.
