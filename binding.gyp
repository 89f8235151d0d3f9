{
  "targets": [
    {
      "target_name": "dbcore",
      "sources": ["<!@(node scripts/gyp-sources.js)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native",
        "/usr/include/x86_64-linux-gnu/openblas-openmp",
        "/usr/include/openblas"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED",
                  "DBCORE_VERSION=\"<!(node -p \"require('./package.json').version\")\""],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fopenmp", "-fexceptions"],
      "ldflags": ["-fopenmp"],
      "libraries": ["-lopenblas"],
      "conditions": [
        ["OS=='win'", {
          "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17", "/openmp:llvm"] } },
          "libraries!": ["-lopenblas"],
          "libraries": ["openblas.lib"]
        }]
      ]
    }
  ]
}
