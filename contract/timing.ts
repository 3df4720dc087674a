// Timing both the pure core and the adapters rely on: one number, one place.

/**
 * Time the mesh is given to learn of a new object before anything depends on it. Config reaches
 * Envoy in seconds, slower under load; creationTimestamp has 1 s resolution, so this is a floor.
 */
export const meshPropagationMs = 5000;
