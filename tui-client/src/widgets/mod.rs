//! Reusable pieces: text fields and forms (model and rendering), card-number helpers, sparklines.

pub mod card;
pub mod form;
pub mod spark;
pub mod text_input;
