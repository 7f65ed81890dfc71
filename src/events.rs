//! Event files dropped by hook.sh into `state_dir/events`. (stub)
