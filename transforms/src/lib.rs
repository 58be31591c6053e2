//! Array layouts and layout-converting copy kernels.
