//! Membership with openraft: to be written.
