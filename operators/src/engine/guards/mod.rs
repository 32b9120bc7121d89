//! The guards that steer decoding in process: figures ([`constrain`]) and names ([`names`]) of
//! the source only, no copying of the style's worked examples ([`leak`]), the Question/Answer
//! format ([`qa`]). Their rules are `fidelity`'s, the same the gates judge with; [`agreement`]
//! checks that the gates accept what the guards let through.

#[cfg(test)]
mod agreement;
pub mod constrain;
pub mod leak;
pub mod names;
pub mod qa;
