//! The albatross wire codec (AV5): framing and DER. Being written; see issue 4.
