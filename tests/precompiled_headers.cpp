// The owner of the test programs' precompiled header (tests/CMakeLists.txt: rf_test_pch): CMake
// compiles the header once for this program, and every test program reuses it. It does nothing.
int main() {
  return 0;
}
