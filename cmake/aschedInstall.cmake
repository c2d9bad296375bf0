# Install rules: the libraries, their headers, a CMake package with one export set per
# component (find_package(asched COMPONENTS ...) loads only what is asked for), pkg-config
# files, and the licence. The same package is exported from the build tree.
include(CMakePackageConfigHelpers)

set(ASCHED_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/asched)
get_property(ASCHED_BUILT_COMPONENTS GLOBAL PROPERTY ASCHED_BUILT_COMPONENTS)
if(BUILD_SHARED_LIBS)
  set(ASCHED_STATIC OFF)
else()
  set(ASCHED_STATIC ON)
endif()

set(backend_headers
  sqlite include/asched/data_stores/sqlite_data_store.hpp
  postgres include/asched/data_stores/postgres_data_store.hpp
  postgres include/asched/event_brokers/postgres_event_broker.hpp
  redis include/asched/event_brokers/redis_event_broker.hpp
  mqtt include/asched/event_brokers/mqtt_event_broker.hpp
  mariadb include/asched/data_stores/mariadb_data_store.hpp
  admin include/asched/admin_server.hpp)

# The core: every header but the backends'.
install(TARGETS asched EXPORT aschedTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
set(excludes)
foreach(h IN LISTS backend_headers)
  if(h MATCHES "\\.hpp$")
    get_filename_component(n ${h} NAME)
    list(APPEND excludes PATTERN ${n} EXCLUDE)
  endif()
endforeach()
install(DIRECTORY include/asched DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp" ${excludes})
install(FILES ${PROJECT_BINARY_DIR}/include/asched/version.hpp ${PROJECT_BINARY_DIR}/include/asched/config.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/asched)
install(EXPORT aschedTargets NAMESPACE asched:: DESTINATION ${ASCHED_CMAKE_DIR})
export(EXPORT aschedTargets NAMESPACE asched:: FILE ${PROJECT_BINARY_DIR}/aschedTargets.cmake)

# The components: their library, their headers, their own export set.
foreach(c IN LISTS ASCHED_BUILT_COMPONENTS)
  install(TARGETS asched_${c} EXPORT asched-${c}-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  set(i 0)
  list(LENGTH backend_headers n)
  while(i LESS n)
    list(GET backend_headers ${i} owner)
    math(EXPR j "${i} + 1")
    list(GET backend_headers ${j} h)
    if(owner STREQUAL c)
      get_filename_component(d ${h} DIRECTORY)
      string(REGEX REPLACE "^include/" "" d ${d})
      install(FILES ${h} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${d})
    endif()
    math(EXPR i "${i} + 2")
  endwhile()
  install(EXPORT asched-${c}-targets NAMESPACE asched:: DESTINATION ${ASCHED_CMAKE_DIR})
  export(EXPORT asched-${c}-targets NAMESPACE asched:: FILE ${PROJECT_BINARY_DIR}/asched-${c}-targets.cmake)
endforeach()

configure_package_config_file(cmake/aschedConfig.cmake.in
  ${PROJECT_BINARY_DIR}/aschedConfig.cmake INSTALL_DESTINATION ${ASCHED_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/aschedConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
configure_file(cmake/Findasio.cmake ${PROJECT_BINARY_DIR}/Findasio.cmake COPYONLY)
install(FILES ${PROJECT_BINARY_DIR}/aschedConfig.cmake ${PROJECT_BINARY_DIR}/aschedConfigVersion.cmake
  cmake/Findasio.cmake DESTINATION ${ASCHED_CMAKE_DIR})

# pkg-config: asched.pc for the core, asched-<component>.pc for each backend. Relocatable:
# the prefix is found from the file's own place.
file(RELATIVE_PATH pc_to_prefix "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
function(asched_pkg_config file name lib requires requires_private libs_private cflags)
  if(ASCHED_STATIC) # a static library's dependencies belong on every link line
    set(requires "${requires} ${requires_private}")
    set(requires_private "")
    set(libs_extra "${libs_private}")
    set(libs_private "")
  endif()
  string(STRIP "${requires}" requires)
  set(content "prefix=\${pcfiledir}/${pc_to_prefix}
libdir=\${prefix}/${CMAKE_INSTALL_LIBDIR}
includedir=\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}

Name: ${name}
Description: ${PROJECT_DESCRIPTION}: ${name}
URL: ${PROJECT_HOMEPAGE_URL}
Version: ${PROJECT_VERSION}
Requires: ${requires}
Requires.private: ${requires_private}
Cflags: -I\${includedir} ${cflags}
Libs: -L\${libdir} -l${lib} ${libs_extra}
Libs.private: ${libs_private}
")
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/pkgconfig/${file}.pc CONTENT "${content}")
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${file}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
asched_pkg_config(asched asched asched "nlohmann_json" "fmt" "-ldate-tz -pthread"
  "-std=c++20 -pthread -DASIO_STANDALONE -DASIO_NO_DEPRECATED")
if(ASCHED_WITH_SQLITE)
  asched_pkg_config(asched-sqlite asched-sqlite asched-sqlite "asched" "sqlite3" "" "")
endif()
if(ASCHED_WITH_POSTGRES)
  asched_pkg_config(asched-postgres asched-postgres asched-postgres "asched" "libpq" "" "")
endif()
if(ASCHED_WITH_REDIS)
  asched_pkg_config(asched-redis asched-redis asched-redis "asched" "hiredis" "" "")
endif()
if(ASCHED_WITH_MQTT)
  asched_pkg_config(asched-mqtt asched-mqtt asched-mqtt "asched" "libmosquitto" "" "")
endif()
if(ASCHED_WITH_MARIADB)
  asched_pkg_config(asched-mariadb asched-mariadb asched-mariadb "asched" "libmariadb" "" "")
endif()
if(ASCHED_WITH_ADMIN)
  asched_pkg_config(asched-admin asched-admin asched-admin "asched" "" "-lhttp_parser -lfmt" "")
endif()

install(FILES LICENSE README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
