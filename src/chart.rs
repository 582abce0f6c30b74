//! SVG charts (placeholder).
