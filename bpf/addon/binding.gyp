# Builds sluice_bpf.node: the C++ N-API binding over the system libbpf (pkg-config: libbpf, libelf, zlib).
{
  "targets": [
    {
      "target_name": "sluice_bpf",
      "sources": [
        "src/addon.cc",
        "src/common.cc",
        "src/map.cc",
        "src/program.cc",
        "src/object.cc",
        "src/link.cc",
        "src/sys.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "<!@(pkg-config --cflags libbpf libelf zlib)"],
      "libraries": ["<!@(pkg-config --libs libbpf libelf zlib)"]
    }
  ]
}
