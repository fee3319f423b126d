//! The user service (business endpoints land with issue #3).
