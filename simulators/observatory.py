"""A simulated observatory: camera, filter wheel, flat panel and sky sharing one clock and one
optical path, so panel brightness, filter, cover and twilight all reach the sensor."""

from __future__ import annotations

from dataclasses import dataclass

from calibd.drivers.clock import Clock
from calibd.simulators.accessories import SimulatedFilterWheel, SimulatedFlatPanel
from calibd.simulators.camera import SimFaults, SimulatedCamera
from calibd.simulators.optics import OpticalTrain, transmission
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sky import SimulatedSky


@dataclass
class SimulatedObservatory:
    camera: SimulatedCamera
    wheel: SimulatedFilterWheel | None
    panel: SimulatedFlatPanel | None
    sky: SimulatedSky | None
    optics: OpticalTrain

    def illumination(self) -> Illumination | None:
        """What reaches the sensor now: the panel (when in the beam) or, with the panel's cover
        open, the sky; through the current filter, shaped by vignetting and dust, and tagged with
        its source (a colour sensor weighs its channels by the source's spectrum). Without a panel
        the simulated telescope is capped: no light."""
        filt = self.wheel.current() if self.wheel is not None else None
        if self.panel is None:
            return None
        flux = self.panel.panel_flux()
        source = "panel"
        if flux is None:
            flux = self.sky.flux() if self.sky is not None else 0.0
            source = "sky"
        if flux <= 0:
            return None
        return Illumination(flux_e_per_s=flux * transmission(filt),
                            pattern=self.optics.pattern(filt), source=source)


def build_observatory(
    profile: SensorProfile,
    clock: Clock,
    *,
    camera_name: str = "simulator",
    ambient_c: float = 10.0,
    noise_seed: int | None = None,
    faults: SimFaults | None = None,
    wheel: SimulatedFilterWheel | None = None,
    panel: SimulatedFlatPanel | None = None,
    sky: SimulatedSky | None = None,
) -> SimulatedObservatory:
    """Wire a simulated camera to the given accessories through one optical train."""
    camera = SimulatedCamera(profile, clock, ambient_c=ambient_c, noise_seed=noise_seed,
                             faults=faults, name=camera_name)
    obs = SimulatedObservatory(camera=camera, wheel=wheel, panel=panel, sky=sky,
                               optics=OpticalTrain(profile.width, profile.height,
                                                   seed=profile.seed + 1))
    if wheel is not None or panel is not None or sky is not None:
        camera.light = obs.illumination
    return obs
