"""A simulated observatory: camera, filter wheel, flat panel, sky, mount and dome sharing one
clock and one optical path, so panel brightness, filter, cover, dome shutter, twilight and the
stars where the mount points all reach the sensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from calibd.drivers.clock import Clock
from calibd.drivers.pointing import SIDEREAL_DEG_PER_S
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.accessories import SimulatedFlatPanel
from calibd.simulators.camera import SimFaults
from calibd.simulators.camera import SimulatedCamera
from calibd.simulators.mount import SimulatedDome
from calibd.simulators.mount import SimulatedMount
from calibd.simulators.optics import OpticalTrain
from calibd.simulators.optics import transmission
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.sensor import F32
from calibd.simulators.sensor import Illumination
from calibd.simulators.sky import SimulatedSky
from calibd.simulators.sky import StarField


@dataclass
class SimulatedObservatory:
    camera: SimulatedCamera
    wheel: SimulatedFilterWheel | None
    panel: SimulatedFlatPanel | None
    sky: SimulatedSky | None
    optics: OpticalTrain
    mount: SimulatedMount | None = None
    dome: SimulatedDome | None = None
    stars: StarField | None = None

    def illumination(self) -> Illumination | None:
        """What reaches the sensor now: the panel (when in the beam) or, with the panel's cover
        open (or no panel but a mount) and the dome open, the sky — with the stars where the
        mount points; through the current filter, shaped by vignetting and dust, and tagged with
        its source ('panel' or 'sky'). Without a panel
        or a mount the simulated telescope is capped: no light."""
        filt = self.wheel.current() if self.wheel is not None else None
        if self.panel is None and self.mount is None:
            return None
        flux = self.panel.panel_flux() if self.panel is not None else None
        stars = None
        source = "panel"  # a colour sensor weighs its channels by the source's spectrum
        if flux is None:
            if self.dome is not None and not self.dome.sky_open():
                return None
            flux = self.sky.flux() if self.sky is not None else 0.0
            stars = self._star_layer(transmission(filt))
            source = "sky"
        if flux <= 0:
            return None
        return Illumination(flux_e_per_s=flux * transmission(filt),
                            pattern=self.optics.pattern(filt), stars=stars, source=source)

    def _star_layer(self, throughput: float) -> Callable[[float], F32] | None:
        """The stars of the exposure that ends now (called at read-out with its length)."""
        mount, field = self.mount, self.stars
        if mount is None or field is None:
            return None
        end = self.camera.clock.now()
        shape = (self.optics.height, self.optics.width)

        def render(exposure_s: float) -> F32:
            start = end - timedelta(seconds=exposure_s)
            ra, dec = mount.radec(start)
            tracking = mount.pointing(start)[2]
            drift = 0.0 if tracking else SIDEREAL_DEG_PER_S
            image = field.render(shape, ra, dec, exposure_s, drift)
            image *= throughput
            return image

        return render


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
    mount: SimulatedMount | None = None,
    dome: SimulatedDome | None = None,
    stars: StarField | None = None,
) -> SimulatedObservatory:
    """Wire a simulated camera to the given accessories through one optical train."""
    camera = SimulatedCamera(profile, clock, ambient_c=ambient_c, noise_seed=noise_seed,
                             faults=faults, name=camera_name)
    obs = SimulatedObservatory(camera=camera, wheel=wheel, panel=panel, sky=sky,
                               optics=OpticalTrain(profile.width, profile.height,
                                                   seed=profile.seed + 1),
                               mount=mount, dome=dome, stars=stars)
    if any(d is not None for d in (wheel, panel, sky, mount)):
        camera.light = obs.illumination
    return obs
