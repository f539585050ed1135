//! `flotilla`: the command line for Flotilla.
fn main() {
    println!("flotilla: not yet implemented");
}
