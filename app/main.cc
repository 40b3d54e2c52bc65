#include "cli/commands.h"

int main(int argc, char** argv) { return drawbridge::cli::Main(argc, argv); }
