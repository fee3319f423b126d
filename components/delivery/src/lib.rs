//! The delivery service (not implemented yet: every route answers 404 until its issue lands).
