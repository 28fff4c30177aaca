//! tooljet
