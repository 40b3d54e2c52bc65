# Warnings for our own code only (applied per target by drawbridge_add_library).
set(DRAWBRIDGE_WARNINGS -Wall -Wextra -Wpedantic -Wnon-virtual-dtor
    -Wno-unused-parameter -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND DRAWBRIDGE_WARNINGS -Wshadow=local)
elseif(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND DRAWBRIDGE_WARNINGS -Wthread-safety)
endif()

# drawbridge_add_library(NAME SOURCES... DEPS ...): one static library per module.
function(drawbridge_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${DRAWBRIDGE_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()
