// livetap_backend: the reference backend process (source or target of a
// live-TAP hand-off); everything lives in the library (backend.hpp).
#include "vnetct/livetap/backend.hpp"

int main(int argc, char** argv) { return vnetct::livetap::backend_main(argc - 1, argv + 1); }
