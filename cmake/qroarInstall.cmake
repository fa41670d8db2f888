include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS qroar EXPORT qroarTargets)
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT qroarTargets NAMESPACE qroar:: DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/qroar)

configure_package_config_file(cmake/qroarConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/qroarConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/qroar)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/qroarConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/qroarConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/qroarConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/qroar)
